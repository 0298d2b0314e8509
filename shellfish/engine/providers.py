"""Execution providers and session options.

CPU by default with threads set for the machine; `coreml` tries CoreMLExecutionProvider then
CPU; `cuda` tries CUDAExecutionProvider then CPU. A provider this onnxruntime build does not
offer gives one clear warning (returned, not printed: library code never prints) and CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shellfish.errors import ModelError

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cuda": "CUDAExecutionProvider",
}


@dataclass(frozen=True)
class ProviderChoice:
    providers: list[str]
    warnings: list[str] = field(default_factory=list)


def default_threads() -> int:
    """One intra-op thread per physical core (hyper-threads slow small matmuls down)."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or the platform cannot tell
        physical = None
    return max(1, physical or os.cpu_count() or 1)


def choose_providers(requested: str = "cpu") -> ProviderChoice:
    import onnxruntime as ort

    requested = (requested or "cpu").lower()
    if requested not in PROVIDER_NAMES:
        raise ModelError(
            f"unknown execution provider {requested!r}",
            hint=f"use one of {', '.join(PROVIDER_NAMES)}",
        )
    if requested == "cpu":
        return ProviderChoice(["CPUExecutionProvider"])
    wanted = PROVIDER_NAMES[requested]
    available = ort.get_available_providers()
    if wanted in available:
        return ProviderChoice([wanted, "CPUExecutionProvider"])
    return ProviderChoice(
        ["CPUExecutionProvider"],
        [
            f"{wanted} is not available in this onnxruntime build "
            f"({', '.join(available)}); running on CPU"
        ],
    )


def create_session(
    path: Path,
    *,
    providers: list[str] | None = None,
    threads: int = 0,
    optimization: str = "all",
    spin: bool = True,
    spin_between_runs: bool = True,
) -> Any:
    """An InferenceSession with sensible options; a missing or corrupt file is a ModelError.

    `spin=False`: the session's threads never spin, for a session that runs now and then beside
    another one: spinning, its threads took the cores from the other session's (a daemon's
    decode steps after a prefill on the prefill graph: 118 -> 146 ms).
    `spin_between_runs=False`: they spin inside a run and stop as soon as it ends, for sessions
    that take turns within one request (a seq2seq model's encoder and decoder).
    """
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(
            f"model file is missing: {path}",
            hint="reinstall the model with `shellfish models pull`",
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not spin_between_runs:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
    except (
        Exception
    ) as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/RuntimeException types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot load {path.name}: {first[:300]}",
            hint="the file is corrupt or truncated; reinstall it with `shellfish models pull`",
        ) from exc
