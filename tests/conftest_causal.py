"""Session fixture: the tiny causal-LM fixtures of tests/fixtures/build_causal.py, built once.

The build output lives in the git-ignored tests/fixtures/generated/causal-<hash>/, keyed by a
hash of the builder script, so an edit to the script rebuilds and an unchanged one is reused
across sessions. Import `causal_models` into a test module to use it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUILDER = HERE / "fixtures" / "build_causal.py"
GENERATED = HERE / "fixtures" / "generated"
NEEDS = ("torch", "transformers", "onnx", "onnxruntime", "onnxruntime_genai", "onnx_ir")


def causal_fixture_dir() -> Path:
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:12]
    return GENERATED / f"causal-{digest}"


def build_causal_fixtures() -> Path:
    """Build (once, under a lock) and return the fixture dir."""
    out = causal_fixture_dir()
    if (out / ".complete").is_file():
        return out
    if not (HERE.parent.parent / "shared" / "tokenizers" / "gpt2" / "tokenizer.json").is_file():
        # The fallback tokenizer of a clone without ../shared makes a model whose random weights
        # end sequences early, which the parity tests cannot use.
        pytest.skip("the causal fixtures need ../shared/tokenizers/gpt2 (../shared is absent)")
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"building causal fixtures needs {', '.join(missing)} (the 'export' extra)")
    GENERATED.mkdir(parents=True, exist_ok=True)
    with open(GENERATED / ".causal.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / ".complete").is_file():
            return out
        staging = Path(tempfile.mkdtemp(prefix=".causal-", dir=GENERATED))
        try:
            done = subprocess.run(
                [sys.executable, str(BUILDER), str(staging)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"fixture build failed:\n{done.stderr[-4000:]}")
            (staging / ".complete").write_text("ok\n")
            shutil.rmtree(out, ignore_errors=True)
            staging.rename(out)
            for stale in GENERATED.glob("causal-*"):  # builds of older versions of the script
                if stale != out:
                    shutil.rmtree(stale, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def causal_models() -> Path:
    return build_causal_fixtures()
