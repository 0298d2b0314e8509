"""Cold vs warm: CLI with no daemon vs warm daemon vs warm daemon with prefix cache.

The measurement itself lives in `benchmarks/daemon_latency.py` (owned by the daemon work);
this finds it in a source checkout and builds its command line for a bench model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from shellfish.bench.models import BenchModel
from shellfish.errors import UsageError


def daemon_latency_script() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "daemon_latency.py"
    return path if path.is_file() else None


def cold_warm_command(model: BenchModel, runs: int, max_tokens: int = 16) -> list[str]:
    script = daemon_latency_script()
    if script is None:
        raise UsageError(
            "--cold-warm needs benchmarks/daemon_latency.py",
            hint="run it from a source checkout of shellfish",
        )
    model_dir = model.int4 or model.onnx
    if model_dir is None:
        raise UsageError(f"{model.name} has no ONNX model for the cold/warm bench")
    return [
        sys.executable,
        str(script),
        "--model-dir",
        model_dir,
        "--runs",
        str(runs),
        "--max-tokens",
        str(max_tokens),
    ]
