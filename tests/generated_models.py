"""Fixture plugin: the tiny generated ONNX models the engine tests run on, built once and cached.

Loaded for every test module through `pytest_plugins` in tests/conftest.py: a test asks for
`t5_models`, `t5_reference`, `rnn_models` or `causal_models` by name, nothing to import.

Each model is built by a committed script in tests/fixtures/ into
tests/fixtures/generated/<name>-<hash>/ (git-ignored) by `build_cached`, the one cache helper:
the hash covers the builder script, so editing it rebuilds and re-runs are instant, and a build
already there is used without the build dependencies. Building needs the `export` extra (torch,
transformers, onnx, ...); without it, or without the reference tokenizers in ../shared, the
tests that need a model skip with the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
GENERATED = FIXTURES / "generated"
SHARED_TOKENIZERS = HERE.parent.parent / "shared" / "tokenizers"
#: What building the torch-based fixtures imports (the `export` extra).
EXPORT_DEPS = ("torch", "transformers", "onnx")
#: The causal builder also runs the onnxruntime-genai model builder.
CAUSAL_DEPS = (*EXPORT_DEPS, "onnxruntime", "onnxruntime_genai", "onnx_ir")


def shared_tokenizer(name: str) -> Path:
    """../shared/tokenizers/<name>, or skip: a user's fresh clone has no ../shared."""
    path = SHARED_TOKENIZERS / name
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"reference tokenizer not available: {path} (../shared is absent)")
    return path


def needs_extra(module: str, extra: str = "export") -> Any:
    """Import `module` of an optional extra (`export`, `bench`), or skip the test saying which."""
    return pytest.importorskip(
        module, reason=f"{module} is not installed (install shellfish[{extra}])"
    )


def require(modules: Sequence[str], why: str) -> None:
    """Skip the calling test unless every module in `modules` can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{why} needs {', '.join(missing)} (install shellfish[export])")


def load_builder(script: str) -> Any:
    """Import a builder script of tests/fixtures/ as a module (skips without the export extra:
    the builders import torch)."""
    require(EXPORT_DEPS, f"tests/fixtures/{script}")
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), FIXTURES / script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_cached(
    script: str,
    name: str,
    build: Callable[[Path], None],
    *,
    key: str = "",
    needs: Sequence[str] = EXPORT_DEPS,
) -> Path:
    """Run `build(out_dir)` once per content hash of `script` (+ `key`); return out_dir.

    Concurrent sessions wait on a lock; a half-built directory is never returned (the build
    goes to a staging directory renamed into place), and older builds of `name` are removed.
    Skips (saying why) when the build is needed and a module of `needs` is missing.
    """
    digest = hashlib.sha256((FIXTURES / script).read_bytes() + key.encode()).hexdigest()[:12]
    out = GENERATED / f"{name}-{digest}"
    if (out / ".complete").is_file():
        return out
    require(needs, f"building the {name} test models")
    with _lock(GENERATED / f".{name}.lock"):
        if (out / ".complete").is_file():
            return out
        partial = GENERATED / f".{name}-{digest}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            build(partial)
            (partial / ".complete").write_text("ok\n")
            shutil.rmtree(out, ignore_errors=True)
            partial.rename(out)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        for old in GENERATED.glob(f"{name}-*"):  # earlier versions of the same fixture
            if old != out:
                shutil.rmtree(old, ignore_errors=True)
    return out


def build_causal_fixtures() -> Path:
    """The causal-LM fixtures of tests/fixtures/build_causal.py (gpt2 and qwen layouts)."""
    # The fallback tokenizer of a clone without ../shared makes a model whose random weights
    # end sequences early, which the parity tests cannot use.
    shared_tokenizer("gpt2")

    def build(out: Path) -> None:
        # A separate interpreter: the genai builder changes process-wide torch settings.
        done = subprocess.run(
            [sys.executable, str(FIXTURES / "build_causal.py"), str(out)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"fixture build failed:\n{done.stderr[-4000:]}")

    # The fixtures run shellfish's own converter step (short_pass_logits): rebuild when it changes.
    worker = Path(__file__).resolve().parents[1] / "shellfish" / "store" / "convert_worker.py"
    key = hashlib.sha256(worker.read_bytes()).hexdigest()
    return build_cached("build_causal.py", "causal", build, key=key, needs=CAUSAL_DEPS)


@pytest.fixture(scope="session")
def causal_models() -> Path:
    """Directory of tiny causal LMs (gpt2, gpt2-split, gpt2-merged, qwen, ... layouts)."""
    return build_causal_fixtures()


@pytest.fixture(scope="session")
def t5_models() -> Path:
    """Directory with torch/ (transformers checkpoint), split/ and merged/ ONNX layouts."""
    # The fallback tokenizer of a clone without ../shared gives a model the tests cannot use
    # (its random weights end sequences at once): skip, saying why.
    shared_tokenizer("t5")
    return build_cached(
        "build_seq2seq.py",
        "t5-tiny",
        lambda out: load_builder("build_seq2seq.py").build(out, "tiny", 0),
        key="shared",
    )


@pytest.fixture(scope="session")
def t5_reference(t5_models: Path) -> Any:
    """The same weights as a transformers model (the reference implementation)."""
    torch = needs_extra("torch")
    transformers = needs_extra("transformers")
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(1)  # the machine is shared; more threads only contend
    return transformers.T5ForConditionalGeneration.from_pretrained(t5_models / "torch").eval()


@pytest.fixture(scope="session")
def rnn_models() -> Path:
    """Directory with lstm/ and gru/ (model.onnx, model.pt, shellfish-recurrent.json)."""
    return build_cached(
        "build_recurrent.py",
        "rnn-tiny",
        lambda out: load_builder("build_recurrent.py").build(out, 0),
    )
