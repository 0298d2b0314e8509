"""Result records, the derived metrics, ratios against shellfish, and their JSON form.

Derived metrics (the same formula for every engine):
- time to first token at context c: median time of a 1-token generation;
- decode ms/token at (c, n): (median time(c, n) - median time(c, 1)) / (n - 1);
- decode tokens/s: 1000 / decode ms/token.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shellfish.errors import UsageError

REFERENCE_ENGINE = "shellfish"


@dataclass
class EngineResult:
    engine: str
    status: str = "ok"  # ok | unavailable | error | timeout
    reason: str = ""
    description: str = ""
    precision: str = ""
    threads: int = 0
    load_ms: float | None = None
    rss_after_load_mb: float | None = None
    peak_rss_mb: float | None = None
    wall_s: float = 0.0
    points: dict[str, dict[str, Any]] = field(default_factory=dict)  # "c16-n64" -> record
    quality_ids: list[list[int]] | None = None  # greedy ids per fixed quality prompt
    # 1-minute load average when this engine's worker started and ended: on a shared machine
    # a ratio between engines is only as good as the load they ran under.
    load_avg: list[float] | None = None

    def median(self, context: int, new_tokens: int) -> float | None:
        rec = self.points.get(f"c{context}-n{new_tokens}")
        return None if rec is None else float(rec["median_ms"])

    def ttft_ms(self, context: int) -> float | None:
        return self.median(context, 1)

    def decode_ms_per_token(self, context: int, new_tokens: int) -> float | None:
        if new_tokens < 2:
            return None
        total, first = self.median(context, new_tokens), self.median(context, 1)
        if total is None or first is None:
            return None
        return _per_token(total, first, new_tokens)

    def round_decode_ms(self, context: int, new_tokens: int) -> list[float] | None:
        """Decode ms/token of each round (`bench --rounds`), by the same formula; None when
        the result has no per-round medians."""
        total = self.points.get(f"c{context}-n{new_tokens}", {}).get("round_medians_ms")
        first = self.points.get(f"c{context}-n1", {}).get("round_medians_ms")
        if new_tokens < 2 or not total or not first or len(total) != len(first):
            return None
        return [_per_token(t, f, new_tokens) for t, f in zip(total, first, strict=True)]

    def tokens_per_s(self, context: int, new_tokens: int) -> float | None:
        per = self.decode_ms_per_token(context, new_tokens)
        return None if not per else 1000.0 / per

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class BenchResult:
    model: dict[str, Any]
    plan: dict[str, Any]
    engines: list[EngineResult] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    started: str = ""

    @property
    def ran(self) -> bool:
        """Whether any engine was measured."""
        return any(e.ok for e in self.engines)

    def engine(self, name: str) -> EngineResult | None:
        return next((e for e in self.engines if e.engine == name), None)

    @property
    def contexts(self) -> list[int]:
        return sorted({int(r["context"]) for e in self.engines for r in e.points.values()})

    def lengths(self, context: int) -> list[int]:
        return sorted(
            {
                int(r["new_tokens"])
                for e in self.engines
                for r in e.points.values()
                if int(r["context"]) == context
            }
        )

    @property
    def reference(self) -> EngineResult | None:
        """The shellfish engine ratios are taken against: `shellfish` when it ran, else the
        first shellfish variant that ran (an int4-only model has only `shellfish-int4`)."""
        ran = [e for e in self.engines if e.ok]
        exact = next((e for e in ran if e.engine == REFERENCE_ENGINE), None)
        return exact or next((e for e in ran if e.engine.startswith(REFERENCE_ENGINE)), None)

    def ratio(
        self, engine: EngineResult, value: float | None, ref_value: float | None
    ) -> float | None:
        """peer time / shellfish time: above 1 means shellfish is faster."""
        ref = self.reference
        if value is None or not ref_value or engine.engine == REFERENCE_ENGINE:
            return None
        if ref is not None and engine.engine == ref.engine:
            return None
        return value / ref_value

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "plan": self.plan,
            "machine": self.machine,
            "started": self.started,
            "engines": [asdict(e) for e in self.engines],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        engines = [
            EngineResult(**{k: v for k, v in e.items() if k in EngineResult.__dataclass_fields__})
            for e in data.get("engines", [])
        ]
        return cls(
            model=data.get("model", {}),
            plan=data.get("plan", {}),
            engines=engines,
            machine=data.get("machine", {}),
            started=data.get("started", ""),
        )

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def load_result(path: Path) -> BenchResult:
    try:
        return BenchResult.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(
            f"cannot read bench result {path}: {exc}",
            hint="run `shellfish bench --out DIR` to produce one",
        ) from exc


def agreement(reference: list[int] | None, other: list[int] | None) -> float | None:
    """Share of the reference produced identically before the first differing token.

    After a divergence greedy decoding follows a different prefix, so later positions say
    nothing about precision; the prefix up to the first difference is what counts.
    """
    if not reference or other is None:
        return None
    same = 0
    for a, b in zip(reference, other, strict=False):
        if a != b:
            break
        same += 1
    return same / len(reference)


def mean_agreement(
    reference: list[list[int]] | None, other: list[list[int]] | None
) -> tuple[float, float] | None:
    """(mean prefix agreement, share of prompts whose first token agrees) over the prompts."""
    if not reference or other is None or len(reference) != len(other):
        return None
    shares = [agreement(r, o) or 0.0 for r, o in zip(reference, other, strict=True)]
    first = [bool(r) and bool(o) and r[0] == o[0] for r, o in zip(reference, other, strict=True)]
    return sum(shares) / len(shares), sum(first) / len(first)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import psutil

        info["cores_physical"] = psutil.cpu_count(logical=False)
        info["cores_logical"] = psutil.cpu_count(logical=True)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg"] = [round(x, 2) for x in psutil.getloadavg()]
    except Exception:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def _per_token(total_ms: float, first_ms: float, new_tokens: int) -> float:
    """Decode ms/token from the time of `new_tokens` and of 1 token (the module's formula)."""
    return max(total_ms - first_ms, 0.0) / (new_tokens - 1)
