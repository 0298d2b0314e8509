"""Shared fixtures: an isolated SHELLFISH_HOME and an Environment with captured streams.

The tiny generated ONNX models (`causal_models`, `t5_models`, `t5_reference`, `rnn_models`)
come from the fixture plugin tests/generated_models.py.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from shellfish.environment import Environment

pytest_plugins = ["generated_models"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


class TTYStringIO(io.StringIO):
    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def shellfish_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "shellfish-home"
    home.mkdir()
    monkeypatch.setenv("SHELLFISH_HOME", str(home))
    return home


@pytest.fixture
def make_env(shellfish_home: Path):
    """Build an Environment whose stdout/stderr are captured; stdin text optional."""

    def build(stdin: str = "", *, tty: bool = False, **extra_env: str) -> Environment:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SHELLFISH_")}
        environ["SHELLFISH_HOME"] = str(shellfish_home)
        environ.update(extra_env)
        stdin_stream = TTYStringIO(tty)
        stdin_stream.write(stdin)
        stdin_stream.seek(0)
        return Environment(
            stdin=stdin_stream, stdout=TTYStringIO(tty), stderr=TTYStringIO(tty), environ=environ
        )

    return build


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip when the reference material is not beside the repo."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference material {path} is not present (a fresh clone has no ../shared)")
    return path
