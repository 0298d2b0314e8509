"""The bench engine plugin contract.

An engine loads one format of a `BenchModel` and generates EXACTLY `new_tokens` tokens (end of
sequence ignored) greedily from given ids, so every engine does the same work. `check` says,
without loading anything heavy, why an engine cannot run here (package missing, no file in
the right format); the harness reports that reason in the table instead of a number.
"""

from __future__ import annotations

from typing import ClassVar

from shellfish.bench.models import BenchModel
from shellfish.errors import ShellfishError


class EngineUnavailable(ShellfishError):
    """This engine cannot run on this machine or model (missing package, missing format)."""


def require_module(module: str, install: str) -> None:
    """Raise EngineUnavailable when `module` cannot be found (without importing it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise EngineUnavailable(f"{module} is not installed", hint=f"pip install {install}")


def require(path: str | None, what: str) -> str:
    if not path:
        raise EngineUnavailable(
            f"the model has no {what}", hint="build it with benchmarks/make_models.py"
        )
    return path


class BenchEngine:
    """Base class; subclasses set `name`, `precision` and implement the four methods."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Environment variable naming a directory put first on the worker's PYTHONPATH (peers
    # whose package pins conflict with the project's venv live in such an overlay).
    overlay_env: ClassVar[str | None] = None

    @classmethod
    def default_overlay(cls, environ: dict[str, str]) -> str:
        """The overlay directory used when `overlay_env` is unset ("" for none)."""
        return ""

    def __init__(self, model: BenchModel, threads: int) -> None:
        self.model = model
        self.threads = threads

    @property
    def precision(self) -> str:
        return "fp32"

    def check(self) -> None:
        """Raise EngineUnavailable when this engine cannot run this model here."""

    def load(self) -> None:
        raise NotImplementedError

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        """Greedy-generate exactly `new_tokens` ids after `ids` (the generated ids only)."""
        raise NotImplementedError

    def close(self) -> None:
        """Free what `load` took (the worker process exits anyway)."""
