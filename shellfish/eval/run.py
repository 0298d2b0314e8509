"""Run (request, command) pairs through the full suggestion path and score the answers.

`evaluate` drives `shellfish.suggest.run_suggest` exactly as the CLI and the daemon do,
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
from shellfish.eval.metric import aggregate_top_k, exact_match, nlc2cmd_score, template_match
from shellfish.events import Done

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.engine.base import Runner
    from shellfish.paths import Paths

CONFIGS = ("zero-shot", "retrieval", "full")
# The competition's protocol scores up to this many ranked predictions, each weighted by the
# confidence the system gives it (`competition_score`).
TOP_K = 5


@dataclass
class Item:
    request: str
    reference: str
    prediction: str
    score: float  # NLC2CMD of the first command alone, at full confidence: what a user gets
    exact: bool
    template: bool
    seconds: float
    valid: bool | None = None
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens answered by the prefix cache
    completion_tokens: int = 0
    prefill_ms: float = 0.0
    candidates: list[dict[str, Any]] = field(default_factory=list)  # ranked, as run_suggest gave
    competition: float = 0.0  # the competition's protocol: top-5, confidence-weighted


@dataclass
class Report:
    config: str
    model: str
    items: list[Item] = field(default_factory=list)
    cwd: str | None = None  # the requests' pretended cwd: count the answers that contain it

    def cwd_leaks(self) -> int:
        """Answers that contain the absolute cwd although their request does not name it."""
        cwd = (self.cwd or "").rstrip("/")
        if not cwd:
            return 0
        return sum(cwd in i.prediction and cwd not in i.request for i in self.items)

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
            "nlc2cmd_competition": round(sum(i.competition for i in self.items) / n, 4),
            "exact_match": round(sum(i.exact for i in self.items) / n, 4),
            "template_match": round(sum(i.template for i in self.items) / n, 4),
            "median_s": round(statistics.median(times), 3) if times else 0.0,
            "p90_s": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3) if times else 0.0,
            **({"cwd_leaks": self.cwd_leaks()} if self.cwd else {}),
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
    from shellfish.request import TaskRequest
    from shellfish.suggest import run_suggest

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
        candidates = list(done.extra.get("candidates") or []) if done is not None else []
        if candidates:
            valid = bool(candidates[0].get("valid"))
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
            candidates=candidates,
            competition=competition_score(candidates, reference),
        )


def competition_score(candidates: list[dict[str, Any]], reference: str) -> float:
    """The NLC2CMD competition's score of one answer: its first `TOP_K` ranked commands, each
    scored at the confidence shellfish gives it (0..1), best if any is positive, else the mean.

    A confident right answer scores as in the strict score; an unconfident wrong one costs
    less. It rewards calibrated confidence, which is why the competition used it and why we
    report it next to (never instead of) the strict first-command score.
    """
    scores = [
        nlc2cmd_score(str(c["command"]), reference, float(c.get("confidence", 1.0)))
        for c in candidates[:TOP_K]
        if c.get("command")
    ]
    return aggregate_top_k(scores) if scores else -1.0
