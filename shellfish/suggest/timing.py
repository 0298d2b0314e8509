"""Where a suggestion's time goes: per-stage wall times for the `Done` event.

`StageClock` is a lap timer: each `lap(name)` charges the time since the previous lap to
`name` (a stage met twice, e.g. the checks of an adapted answer, adds up). The model call is
split with the runner's own figures into `prefill` (the prompt's forward pass), `decode` (first
token to last) and `engine_other` (tokenizing, waiting for the runner's lock, prefix-cache
lookup, detokenizing, and whatever the consumer did between tokens).

Contract (tests/test_suggest_timing.py): every stage is >= 0 ms and, since laps never overlap,
the stages add up to no more than the pipeline's own total (`extra["suggest_ms"]`, which
leaves out waiting for a busy model). What happens outside the pipeline (the socket, the
daemon's dispatch, that wait, loading the model) is not in here: the daemon's
`extra["daemon_ms"]` and `extra["queue_ms"]` and the client's wall time give those by
difference (see benchmarks/suggest_stages.py and docs/protocol.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shellfish.events import Done

# The order stages happen in (and are plotted in); a stage not met is absent from the dict.
STAGES = (
    "retrieval",
    "prompt",
    "prefill",
    "decode",
    "engine_other",
    "candidates",
    "checks",
    "rank",
    "adapt",
)


class StageClock:
    """`waited` (ms, monotonic; `shellfish.store.pool.queue_waited_ms`) is time spent queued
    for a busy model: it is left out of every lap, as it is out of the pipeline's total (the
    daemon reports it as `extra.queue_ms`)."""

    def __init__(
        self, started: float | None = None, waited: Callable[[], float] | None = None
    ) -> None:
        self._last = self._start = time.perf_counter() if started is None else started
        self._waited = waited
        self._last_waited = self._start_waited = waited() if waited is not None else 0.0
        self.ms: dict[str, float] = {}

    def total_ms(self) -> float:
        """Wall time since the clock started, less the time waited for a busy model (ms)."""
        waited = self._waited() - self._start_waited if self._waited is not None else 0.0
        return (time.perf_counter() - self._start) * 1000 - waited

    def _elapsed(self) -> float:
        now = time.perf_counter()
        elapsed = max(now - self._last, 0.0) * 1000
        self._last = now
        if self._waited is not None:
            waited = self._waited()
            elapsed = max(elapsed - (waited - self._last_waited), 0.0)
            self._last_waited = waited
        return elapsed

    def _charge(self, name: str, ms: float) -> None:
        self.ms[name] = self.ms.get(name, 0.0) + max(ms, 0.0)

    def lap(self, name: str) -> float:
        """Charge the time since the last lap to `name`; return it (ms)."""
        elapsed = self._elapsed()
        self._charge(name, elapsed)
        return elapsed

    def lap_generation(self, done: Done | None) -> None:
        """Charge a model call, split by the runner's figures (clamped to the wall time).

        A runner that reports no timings (a remote one) leaves it all in `engine_other`.
        """
        wall = self._elapsed()
        prefill = decode = 0.0
        if done is not None:
            prefill = min(max(done.prefill_ms, 0.0), wall)
            if done.total_ms > 0 and done.first_token_ms > 0:
                decode = min(max(done.total_ms - done.first_token_ms, 0.0), wall - prefill)
        self._charge("prefill", prefill)
        self._charge("decode", decode)
        self._charge("engine_other", wall - prefill - decode)

    def rounded(self) -> dict[str, float]:
        """The stages in pipeline order, in ms to 0.1 (rounded down so sums never grow)."""
        order = [s for s in STAGES if s in self.ms] + [s for s in self.ms if s not in STAGES]
        return {s: int(self.ms[s] * 10) / 10 for s in order}
