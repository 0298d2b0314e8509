"""Store layout, atomic installs, damaged models, rm, routing, `models default`, `setup`."""

from __future__ import annotations

import io
import json
import os

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
        }
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
    with pytest.raises(ModelNotFound, match=r"shellfish models pull qwen2.5-coder-0.5b-instruct"):
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
    # qwen preferred for suggest once installed
    fake_install(store, "qwen2.5-coder-0.5b-instruct", ["suggest", "explain", "ask", "prompt"])
    assert pick_model("suggest", settings(default=""), store) == "qwen2.5-coder-0.5b-instruct"
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
    fake_install(store, "qwen2.5-coder-0.5b-instruct", ["suggest"])
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
    fake_install(Store(env.paths), "qwen2.5-coder-0.5b-instruct", ["suggest"])
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
