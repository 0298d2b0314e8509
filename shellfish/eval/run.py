"""Run (request, command) pairs through the full suggestion path and score the answers.

`evaluate` drives `shellfish.tasks.suggest.run_suggest` exactly as the CLI and the daemon do,
so the score measures what a user gets, timings included (wall time per request, model and
retrieval and validation together).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.errors import UsageError
from shellfish.eval.metric import exact_match, nlc2cmd_score, template_match
from shellfish.events import Done

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.engine.base import Runner
    from shellfish.paths import Paths

CONFIGS = ("zero-shot", "retrieval", "full")


@dataclass
class Item:
    request: str
    reference: str
    prediction: str
    score: float
    exact: bool
    template: bool
    seconds: float
    valid: bool | None = None
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens answered by the prefix cache
    completion_tokens: int = 0
    prefill_ms: float = 0.0


@dataclass
class Report:
    config: str
    model: str
    items: list[Item] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.items)

    def summary(self) -> dict[str, Any]:
        n = max(1, self.n)
        times = sorted(i.seconds for i in self.items)
        return {
            "config": self.config,
            "model": self.model,
            "n": self.n,
            "nlc2cmd": round(sum(i.score for i in self.items) / n, 4),
            "exact_match": round(sum(i.exact for i in self.items) / n, 4),
            "template_match": round(sum(i.template for i in self.items) / n, 4),
            "median_s": round(statistics.median(times), 3) if times else 0.0,
            "p90_s": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3) if times else 0.0,
        }


def load_pairs(nl: Path, cm: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """Aligned (request, command) lines; a clear error for missing or misaligned files."""
    try:
        requests = nl.read_text(encoding="utf-8").splitlines()
        commands = cm.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(
            f"cannot read {exc.filename}: {exc.strerror}", hint="check --nl / --cm"
        ) from exc
    if len(requests) != len(commands):
        raise UsageError(
            f"{nl} has {len(requests)} lines but {cm} has {len(commands)}",
            hint="--nl and --cm must be aligned line by line",
        )
    pairs = [
        (r.strip(), c.strip())
        for r, c in zip(requests, commands, strict=True)
        if r.strip() and c.strip()
    ]
    if not pairs:
        raise UsageError(f"{nl} holds no (request, command) pairs")
    return pairs[:limit] if limit else pairs


def evaluate(
    pairs: list[tuple[str, str]],
    runner: Runner,
    *,
    settings: Settings,
    paths: Paths,
    config: str = "full",
    context: dict[str, Any] | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Item]:
    """Yield one scored Item per pair, in order (the caller aggregates into a Report)."""
    if config not in CONFIGS:
        raise UsageError(f"unknown --config {config!r}", hint=f"use one of {', '.join(CONFIGS)}")
    from shellfish.tasks.request import TaskRequest
    from shellfish.tasks.suggest import run_suggest

    for text, reference in pairs:
        if cancel is not None and cancel.is_set():
            return
        request = TaskRequest(task="suggest", text=text, context=dict(context or {}))
        started = clock()
        done: Done | None = None
        for event in run_suggest(
            request, runner, settings=settings, paths=paths, cancel=cancel, mode=config
        ):
            if isinstance(event, Done):
                done = event
        seconds = clock() - started
        prediction = done.texts[0] if done is not None and done.texts else ""
        valid = None
        if done is not None and done.extra.get("candidates"):
            valid = bool(done.extra["candidates"][0].get("valid"))
        yield Item(
            request=text,
            reference=reference,
            prediction=prediction,
            score=nlc2cmd_score(prediction, reference),
            exact=exact_match(prediction, reference),
            template=template_match(prediction, reference),
            seconds=seconds,
            valid=valid,
            prompt_tokens=done.prompt_tokens if done is not None else 0,
            reused_tokens=int(done.extra.get("prefix_reused_tokens", 0)) if done is not None else 0,
            completion_tokens=done.completion_tokens if done is not None else 0,
            prefill_ms=round(done.prefill_ms, 1) if done is not None else 0.0,
        )
