"""The engine registry: shellfish's own engine and each peer, as plugins.

Built-in engines are named here as "module:Class" (imported only inside the worker process
that runs them). Third-party engines register under the entry-point group
`shellfish.bench_engines` with the same "module:Class" form.
"""

from __future__ import annotations

import importlib

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable
from shellfish.errors import UsageError

BUILTIN: dict[str, str] = {
    "shellfish": "shellfish.bench.engines.shellfish_engine:ShellfishEngine",
    "shellfish-int8": "shellfish.bench.engines.shellfish_engine:ShellfishInt8Engine",
    "shellfish-int4": "shellfish.bench.engines.shellfish_engine:ShellfishInt4Engine",
    "ort-genai": "shellfish.bench.engines.ort_genai:OrtGenaiEngine",
    "ort-genai-int8": "shellfish.bench.engines.ort_genai:OrtGenaiInt8Engine",
    "ort-genai-int4": "shellfish.bench.engines.ort_genai:OrtGenaiInt4Engine",
    "transformers": "shellfish.bench.engines.transformers_pt:TransformersEngine",
    "optimum": "shellfish.bench.engines.optimum_ort:OptimumEngine",
    "optimum-int8": "shellfish.bench.engines.optimum_ort:OptimumInt8Engine",
    "ct2-fp32": "shellfish.bench.engines.ct2:CT2Fp32Engine",
    "ct2-int8": "shellfish.bench.engines.ct2:CT2Engine",
    "llama.cpp": "shellfish.bench.engines.llama_cpp:LlamaCppEngine",
}
DEFAULT_ENGINES = (
    "shellfish",
    "ort-genai",
    "transformers",
    "optimum",
    "ct2-fp32",
    "ct2-int8",
    "llama.cpp",
)
ENTRY_POINT_GROUP = "shellfish.bench_engines"


def available_names() -> dict[str, str]:
    """Every engine name -> "module:Class" (built-ins, then plugins from entry points)."""
    names = dict(BUILTIN)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            names.setdefault(ep.name, ep.value)
    except Exception:  # broken metadata of some installed package must not break the bench
        pass
    return names


def check_names(names: list[str]) -> list[str]:
    known = available_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown engine(s): {', '.join(unknown)}", hint=f"choose from {', '.join(known)}"
        )
    return names


def engine_class(name: str, target: str | None = None) -> type[BenchEngine]:
    """Import the class of engine `name`; an import failure is EngineUnavailable, not a crash."""
    target = target or available_names().get(name)
    if target is None:
        raise UsageError(f"unknown engine {name!r}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except Exception as exc:
        raise EngineUnavailable(
            f"engine {name} does not import: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BenchEngine)):
        raise EngineUnavailable(f"{target} is not a BenchEngine")
    return cls


__all__ = [
    "BUILTIN",
    "DEFAULT_ENGINES",
    "BenchEngine",
    "EngineUnavailable",
    "check_names",
    "engine_class",
]
