"""The worker process: load ONE engine, time it over the plan's points, report JSON lines.

    python -m shellfish.bench.worker < job.json

Each engine runs in its own process so engines never share allocators, thread pools or
imports, and its peak memory is its own. Results go to the original stdout as JSON lines;
everything else the libraries print (llama.cpp, onnxruntime) is sent to stderr so it cannot
corrupt them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from shellfish.bench.engines import EngineUnavailable, engine_class
from shellfish.bench.inputs import input_ids
from shellfish.bench.models import BenchModel
from shellfish.bench.spec import Job, Plan

Emit = Callable[[dict[str, Any]], None]


def rss_mb() -> float:
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except Exception:
        return 0.0


def peak_rss_mb() -> float:
    """The process's own high-water mark (ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        import resource

        peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except Exception:
        return 0.0
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_job(job: Job, emit: Emit, clock: Callable[[], float] = time.perf_counter) -> int:
    """Run the job, emitting events; returns 0 on success, 1 on an engine failure."""
    from shellfish.engine.providers import default_threads

    model = BenchModel.from_dict(job.model)
    plan = Plan.from_dict(job.plan)
    threads = plan.threads or default_threads()
    stage = "check"
    try:
        cls = engine_class(job.engine, job.extra.get("target"))
        engine = cls(model, threads)
        engine.check()
        emit(
            {
                "type": "info",
                "precision": engine.precision,
                "description": cls.description,
                "threads": threads,
            }
        )
        stage = "load"
        started = clock()
        engine.load()
        emit({"type": "loaded", "load_ms": (clock() - started) * 1000, "rss_mb": rss_mb()})
        stage = "generate"
        for point in plan.points(model.max_positions):
            ids = input_ids(
                point.context,
                vocab_size=model.vocab_size,
                seed=plan.seed,
                tokenizer=model.tokenizer,
            )
            for _ in range(plan.warmup):  # same prefill shape, short decode
                _checked(engine.generate(ids, min(point.new_tokens, 16)), min(point.new_tokens, 16))
            times = []
            for _ in range(plan.repeats_for(point)):
                started = clock()
                out = engine.generate(ids, point.new_tokens)
                times.append((clock() - started) * 1000)
                _checked(out, point.new_tokens)
            emit(
                {
                    "type": "point",
                    "context": point.context,
                    "new_tokens": point.new_tokens,
                    "times_ms": times,
                    "median_ms": statistics.median(times),
                }
            )
        stage = "quality"
        context = min(plan.contexts)
        if model.max_positions is None or context + plan.quality_tokens <= model.max_positions:
            runs = []
            for k in range(plan.quality_prompts):  # different fixed prompts, same every run
                ids = input_ids(
                    context,
                    vocab_size=model.vocab_size,
                    seed=plan.seed + 1 + 7 * k,
                    tokenizer=model.tokenizer,
                )
                runs.append(engine.generate(ids, plan.quality_tokens))
            emit({"type": "quality", "context": context, "ids": runs})
        engine.close()
    except EngineUnavailable as exc:
        emit({"type": "unavailable", "reason": str(exc)})
        return 0
    except Exception as exc:  # a broken peer is reported, never allowed to crash the bench
        message = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        emit({"type": "error", "stage": stage, "message": message[:400]})
        return 1
    finally:
        emit({"type": "end", "peak_rss_mb": peak_rss_mb()})
    return 0


def _checked(out: list[int], wanted: int) -> None:
    if len(out) != wanted:
        raise RuntimeError(
            f"generated {len(out)} tokens where {wanted} were asked "
            "(the engine stopped early or ignored the length)"
        )


def main() -> int:
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter on fd 1 now lands on stderr
    sys.stdout = sys.stderr
    data = json.loads(sys.stdin.read())
    job = Job(**data)

    def emit(event: dict[str, Any]) -> None:
        results.write(json.dumps(event) + "\n")
        results.flush()

    return run_job(job, emit)


if __name__ == "__main__":
    raise SystemExit(main())
