"""What a bench run measures: the plan (lengths, contexts, repeats, seed) and its points."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shellfish.errors import UsageError

DEFAULT_LENGTHS = (1, 16, 64, 256, 1000)
DEFAULT_CONTEXTS = (16, 128, 512)
# The generation length used for the context sweep (decode cost grows with the context).
CONTEXT_SWEEP_LENGTH = 16


@dataclass(frozen=True)
class Point:
    """One measured configuration: `context` input tokens, exactly `new_tokens` generated."""

    context: int
    new_tokens: int

    def key(self) -> str:
        return f"c{self.context}-n{self.new_tokens}"


@dataclass(frozen=True)
class Plan:
    """The sweep. Lengths are measured at the smallest context; contexts at 1 and 16 tokens
    (or the longest length asked for, if shorter).

    Time to first token at a context is the median time of a 1-token generation; decode
    ms/token at length N is (median time(N) - median time(1)) / (N - 1), the same formula for
    every engine, so engines that cannot stream are measured the same way as those that can.
    """

    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    contexts: tuple[int, ...] = DEFAULT_CONTEXTS
    repeats: int = 3
    # Rounds: every engine runs this many times, engines taking turns (A B A B ...); each
    # point's median is over all rounds' runs, so a load that drifts during the bench is
    # shared by every engine instead of landing on whichever ran then.
    rounds: int = 1
    warmup: int = 1
    seed: int = 0
    threads: int = 0  # 0: one per physical core, for every engine alike
    timeout_s: float = 900.0  # per engine worker
    # Long generations are costly: lengths above this are timed once (after the warm-up).
    long_length: int = 256
    # The precision check: greedy tokens from a few fixed prompts, compared across engines.
    quality_prompts: int = 4
    quality_tokens: int = 16

    def validate(self) -> None:
        if not self.lengths or any(n < 1 for n in self.lengths):
            raise UsageError("--lengths must be positive integers, e.g. 1,16,64")
        if not self.contexts or any(c < 1 for c in self.contexts):
            raise UsageError("--contexts must be positive integers, e.g. 16,128,512")
        if self.repeats < 1:
            raise UsageError("--repeats must be at least 1")
        if self.rounds < 1:
            raise UsageError("--rounds must be at least 1")
        if self.warmup < 0:
            raise UsageError("--warmup must be >= 0")
        if self.timeout_s <= 0:
            raise UsageError("--timeout must be > 0")

    def points(self, max_positions: int | None = None) -> list[Point]:
        """Every point to time, in a fixed order; points past the context window are dropped."""
        base = min(self.contexts)
        wanted: list[Point] = [Point(base, 1)]
        wanted += [Point(base, n) for n in sorted(set(self.lengths))]
        sweep = min(CONTEXT_SWEEP_LENGTH, max(self.lengths))
        for c in sorted(set(self.contexts)):
            wanted += [Point(c, 1), Point(c, sweep)]
        out: list[Point] = []
        for p in wanted:
            if p in out:
                continue
            if max_positions is not None and p.context + p.new_tokens > max_positions:
                continue
            out.append(p)
        return out

    def repeats_for(self, point: Point) -> int:
        return 1 if point.new_tokens > self.long_length else self.repeats

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("lengths", "contexts"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def parse_int_list(text: str, flag: str) -> tuple[int, ...]:
    """`"1,16,64"` -> (1, 16, 64); anything else is a UsageError naming the flag."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise UsageError(
            f"{flag} takes comma-separated integers, e.g. 1,16,64; got {text!r}"
        ) from None
    if not values:
        raise UsageError(f"{flag} needs at least one integer")
    return values


@dataclass
class Job:
    """What one worker process is asked to do (sent as JSON on its stdin)."""

    engine: str
    model: dict[str, Any]  # a BenchModel as dict
    plan: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
