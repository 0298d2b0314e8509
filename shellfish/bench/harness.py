"""Run each engine in its own worker process; watch its memory; survive any failure.

A worker that is missing a package reports `unavailable`; one that raises reports `error`
with its first line; one that dies, hangs past the timeout or prints garbage is reported
as such. Nothing a peer does can take the bench down or leave a process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import IO, Any

from shellfish.bench.engines import available_names, check_names, engine_class
from shellfish.bench.models import BenchModel
from shellfish.bench.results import BenchResult, EngineResult, machine_info
from shellfish.bench.spec import Job, Plan

Progress = Callable[[str], None]


def _worker_env(engine: str, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cls = engine_class(engine) if engine in available_names() else None
    except Exception:  # an engine that does not import is reported by its worker
        cls = None
    if cls is not None and cls.overlay_env:
        overlay = env.get(cls.overlay_env) or cls.default_overlay(env)
        if overlay and os.path.isdir(overlay):
            env["PYTHONPATH"] = overlay + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _reader(stream: IO[str], out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def _tree_rss(proc: Any) -> float:
    """RSS of the worker and any children it started, in MiB."""
    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:
                continue
    except Exception:
        return 0.0
    return total / 2**20


def run_engine(
    engine: str,
    model: BenchModel,
    plan: Plan,
    *,
    python: str = sys.executable,
    environ: dict[str, str] | None = None,
    progress: Progress | None = None,
    poll_s: float = 0.05,
    worker_module: str = "shellfish.bench.worker",
    target: str | None = None,
) -> EngineResult:
    """Bench one engine in a fresh worker process (`target` "module:Class" overrides the
    registry, e.g. for an engine defined outside shellfish)."""
    import psutil

    result = EngineResult(engine=engine)
    job = Job(
        engine=engine,
        model=model.to_dict(),
        plan=plan.to_dict(),
        extra={"target": target or available_names().get(engine)},
    )
    env = _worker_env(engine, dict(os.environ if environ is None else environ))
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    proc = subprocess.Popen(
        [python, "-m", worker_module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    threading.Thread(target=_reader, args=(proc.stderr, errors), daemon=True).start()
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(asdict(job)))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    watched = psutil.Process(proc.pid)
    peak = 0.0
    finished = False
    ended = False
    while not finished:
        peak = max(peak, _tree_rss(watched))
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            if time.monotonic() - started > plan.timeout_s:
                _kill(proc)
                result.status, result.reason = "timeout", f"no result within {plan.timeout_s:.0f}s"
                break
            continue
        if line is None:
            finished = True
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue  # not ours (should not happen: the worker moves chatter to stderr)
        ended = ended or event.get("type") == "end"
        _apply(result, event, progress)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _kill(proc)
        code = -9
    if result.status == "ok" and (code != 0 or not ended):
        tail = _drain(errors)
        result.status = "error"
        result.reason = f"worker exited with status {code}" + (f": {tail}" if tail else "")
    result.peak_rss_mb = max(peak, result.peak_rss_mb or 0.0) or None
    result.wall_s = time.monotonic() - started
    result.load_avg = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    return result


def _apply(result: EngineResult, event: dict[str, Any], progress: Progress | None) -> None:
    kind = event.get("type")
    if kind == "info":
        result.precision = str(event.get("precision", ""))
        result.description = str(event.get("description", ""))
        result.threads = int(event.get("threads", 0))
    elif kind == "loaded":
        result.load_ms = float(event["load_ms"])
        result.rss_after_load_mb = float(event.get("rss_mb") or 0) or None
        if progress:
            progress(f"{result.engine}: loaded in {result.load_ms:.0f} ms")
    elif kind == "point":
        key = f"c{event['context']}-n{event['new_tokens']}"
        result.points[key] = {
            k: event[k] for k in ("context", "new_tokens", "times_ms", "median_ms")
        }
        if progress:
            progress(
                f"{result.engine}: context {event['context']}, {event['new_tokens']} tokens: "
                f"{event['median_ms']:.1f} ms"
            )
    elif kind == "quality":
        result.quality_ids = [[int(i) for i in run] for run in event["ids"]]
    elif kind == "unavailable":
        result.status, result.reason = "unavailable", str(event.get("reason", ""))
    elif kind == "error":
        result.status = "error"
        result.reason = f"{event.get('stage', '')}: {event.get('message', '')}"
    elif kind == "end":
        result.peak_rss_mb = float(event.get("peak_rss_mb") or 0) or None


def _drain(q: queue.Queue[str | None]) -> str:
    """The last meaningful stderr line of a dead worker (its traceback's final line)."""
    time.sleep(0.05)
    text: list[str] = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            break
        if item:
            text.append(item.strip())
    meaningful = [t for t in text if t]
    return meaningful[-1][:300] if meaningful else ""


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        import psutil

        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except Exception:
        pass
    proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run_bench(
    model: BenchModel,
    engines: Sequence[str],
    plan: Plan,
    *,
    python: str = sys.executable,
    environ: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Bench every engine on `model`, one after the other (never concurrently), `plan.rounds`
    times with the engines taking turns."""
    plan.validate()
    check_names(list(engines))
    result = BenchResult(
        model=model.to_dict(),
        plan=plan.to_dict(),
        machine=machine_info(),
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    runs: dict[str, list[EngineResult]] = {name: [] for name in engines}
    for round_no in range(1, plan.rounds + 1):
        for name in engines:
            done = runs[name]
            if done and not done[-1].ok:
                continue  # a peer that failed once is reported, not retried every round
            if progress:
                turn = f" (round {round_no} of {plan.rounds})" if plan.rounds > 1 else ""
                progress(f"{model.name}: {name}{turn} ...")
            engine_result = run_engine(
                name, model, plan, python=python, environ=environ, progress=progress
            )
            if progress and not engine_result.ok:
                progress(f"{name}: {engine_result.status}: {engine_result.reason}")
            done.append(engine_result)
    result.engines = [merge_rounds(runs[name], plan.rounds) for name in engines]
    return result


def merge_rounds(rounds: list[EngineResult], planned: int) -> EngineResult:
    """One engine's rounds as one result: each point's runs pooled (median over all of them),
    load time and RSS after load the median round's, peak RSS the highest, wall time summed.
    A failed round stands for the engine, with the round it failed in (of the `planned`) unless
    it was unavailable, which does not depend on the round."""
    failed = next((r for r in rounds if not r.ok), None)
    if failed is not None:
        if planned > 1 and failed.status != "unavailable":
            failed.reason = f"round {rounds.index(failed) + 1} of {planned}: {failed.reason}"
        return failed
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    merged = EngineResult(
        engine=first.engine,
        description=first.description,
        precision=first.precision,
        threads=first.threads,
        load_ms=_median([r.load_ms for r in rounds]),
        rss_after_load_mb=_median([r.rss_after_load_mb for r in rounds]),
        peak_rss_mb=max((r.peak_rss_mb for r in rounds if r.peak_rss_mb), default=None),
        wall_s=sum(r.wall_s for r in rounds),
        quality_ids=first.quality_ids,
        load_avg=[
            min(r.load_avg[0] for r in rounds if r.load_avg),
            max(r.load_avg[-1] for r in rounds if r.load_avg),
        ]
        if all(r.load_avg for r in rounds)
        else None,
    )
    for key, rec in first.points.items():
        if not all(key in r.points for r in rounds):
            continue  # a point one round lacks is not comparable; never the case in one plan
        times = [t for r in rounds for t in r.points[key]["times_ms"]]
        merged.points[key] = {
            **rec,
            "times_ms": times,
            "median_ms": statistics.median(times),
            "round_medians_ms": [r.points[key]["median_ms"] for r in rounds],
        }
    return merged


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None
