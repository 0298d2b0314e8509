"""Fixtures shared by the engine tests: tiny generated ONNX models, built once and cached.

The models are built by the committed scripts in tests/fixtures/ into
tests/fixtures/generated/<name>-<hash>/ (git-ignored); the hash covers the builder script, so
editing the script rebuilds and re-runs are instant. Building needs torch, transformers and
onnx (the `export` extra); without them the tests that need a model skip with that reason.

Import the fixtures into a test module with `from conftest_engine import ...`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
GENERATED = FIXTURES / "generated"
SHARED_TOKENIZERS = HERE.parent.parent / "shared" / "tokenizers"


def shared_tokenizer(name: str) -> Path:
    """../shared/tokenizers/<name>, or skip: a user's fresh clone has no ../shared."""
    path = SHARED_TOKENIZERS / name
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"reference tokenizer not available: {path} (../shared is absent)")
    return path


def require_export_deps() -> None:
    for module in ("torch", "transformers", "onnx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(
                f"{module} is not installed (needed to build the test models; "
                "install shellfish[export])"
            )


def _load_builder(script: str) -> Any:
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


def build_cached(script: str, name: str, build: Callable[[Any, Path], None], key: str = "") -> Path:
    """Run `build(module, out_dir)` once per content hash of `script` (+ key); return out_dir."""
    require_export_deps()
    digest = hashlib.sha256((FIXTURES / script).read_bytes() + key.encode()).hexdigest()[:12]
    out = GENERATED / f"{name}-{digest}"
    with _lock(GENERATED / f".{name}.lock"):
        if (out / ".complete").is_file():
            return out
        partial = GENERATED / f".{name}-{digest}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        build(_load_builder(script), partial)
        (partial / ".complete").write_text("ok\n")
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        for old in GENERATED.glob(f"{name}-*"):  # earlier versions of the same fixture
            if old != out:
                shutil.rmtree(old, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def t5_models() -> Path:
    """Directory with torch/ (transformers checkpoint), split/ and merged/ ONNX layouts."""
    # The fallback tokenizer of a clone without ../shared gives a model the tests cannot use
    # (its random weights end sequences at once): skip, saying why.
    shared_tokenizer("t5")
    tokenizer_key = "shared"
    return build_cached(
        "build_seq2seq.py", "t5-tiny", lambda m, out: m.build(out, "tiny", 0), tokenizer_key
    )


@pytest.fixture(scope="session")
def t5_reference(t5_models: Path) -> Any:
    """The same weights as a transformers model (the reference implementation)."""
    import torch
    from transformers import T5ForConditionalGeneration
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)  # the machine is shared; more threads only contend
    return T5ForConditionalGeneration.from_pretrained(t5_models / "torch").eval()


@pytest.fixture(scope="session")
def rnn_models() -> Path:
    """Directory with lstm/ and gru/ (model.onnx, model.pt, shellfish-recurrent.json)."""
    return build_cached("build_recurrent.py", "rnn-tiny", lambda m, out: m.build(out, 0))
