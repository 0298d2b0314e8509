"""Suggestion latency by stage, as the shell widget sees it (key press to line replaced).

`ask` sends the widget's own request (`generate`, task `suggest`, non-streaming) over the
daemon's Unix socket and times it from connect to the final reply line. The reply's `done`
carries the pipeline's stages (`extra.stages_ms`, see docs/protocol.md); the two stages
outside the pipeline come by difference:

- `socket`: client wall time - `daemon_ms` (connect, JSON both ways, the daemon's reader);
- `queue`: `queue_ms`, waiting for a model another request was using;
- `daemon`: `daemon_ms` - `queue_ms` - `suggest_ms` (dispatch, looking the model up).

so a record's stages add up to its wall time, minus the pipeline's unaccounted rest (the
`Done` being built), which is reported as `other`. benchmarks/suggest_stages.py drives it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shellfish.suggest.timing import STAGES

# Plot / table order: what the user waits for, first to last.
ALL_STAGES = ("socket", "queue", "daemon", *STAGES, "other")


@dataclass
class StageRecord:
    request: str
    wall_ms: float
    stages_ms: dict[str, float]
    command: str = ""
    load_avg: float = 0.0  # 1-minute load average when the request was sent
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def widget_request(
    text: str, request_id: str, cwd: str, model: str | None = None
) -> dict[str, Any]:
    """The JSON the zsh widget sends (shell-hooks/shellfish.zsh), but with JSON replies.

    `model` None: the daemon's default for suggest, as for the widget."""
    request: dict[str, Any] = {
        "task": "suggest",
        "text": text,
        "context": {"source": "zsh", "cwd": cwd, "shell": "zsh", "os": "linux-gnu"},
    }
    if model:
        request["model"] = model
    return {
        "v": 1,
        "id": request_id,
        "cmd": "generate",
        "stream": False,
        "reply_format": "json",
        "request": request,
    }


def split_stages(wall_ms: float, done: dict[str, Any]) -> dict[str, float]:
    """All stages of one reply: the pipeline's, plus socket/daemon/other by difference.

    Differences are clamped at 0 (the daemon's and the client's clocks are separate readings
    of the same monotonic clock, but rounding can make a difference a hair negative).
    """
    extra = done.get("extra") or {}
    pipeline = {k: float(v) for k, v in (extra.get("stages_ms") or {}).items()}
    suggest_ms = float(extra.get("suggest_ms") or sum(pipeline.values()))
    queue_ms = float(extra.get("queue_ms") or 0.0)
    daemon_ms = float(extra.get("daemon_ms") or suggest_ms + queue_ms)
    stages = {
        "socket": max(wall_ms - daemon_ms, 0.0),
        "queue": queue_ms,
        "daemon": max(daemon_ms - queue_ms - suggest_ms, 0.0),
        **pipeline,
        "other": max(suggest_ms - sum(pipeline.values()), 0.0),
    }
    return stages


def ask(
    sock_path: Path,
    text: str,
    request_id: str,
    *,
    model: str | None = None,
    timeout_s: float = 120.0,
) -> StageRecord:
    """One suggestion through the daemon, timed as the widget waits for it."""
    load = os.getloadavg()[0]
    request = widget_request(text, request_id, os.getcwd(), model)
    payload = (json.dumps(request) + "\n").encode()
    start = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(sock_path))
        conn.sendall(payload)
        reader = conn.makefile("rb")
        final: dict[str, Any] = {}
        for line in reader:
            event = json.loads(line)
            if event.get("final"):
                final = event
                break
    wall_ms = (time.perf_counter() - start) * 1000
    if final.get("kind") != "done":
        raise RuntimeError(f"request {text!r} failed: {final.get('message') or final}")
    texts = final.get("texts") or [""]
    return StageRecord(
        request=text,
        wall_ms=wall_ms,
        stages_ms=split_stages(wall_ms, final),
        command=texts[0],
        load_avg=load,
        extra={k: final.get(k) for k in ("prompt_tokens", "completion_tokens", "model")}
        | {"prefix_reused_tokens": (final.get("extra") or {}).get("prefix_reused_tokens")},
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(records: Sequence[StageRecord]) -> dict[str, dict[str, float]]:
    """{stage: {"p50", "p90", "mean"}} over the records, stages in ALL_STAGES order, then
    "wall". A stage a request did not run counts as 0 ms for it (e.g. `adapt`)."""
    names = [s for s in ALL_STAGES if any(s in r.stages_ms for r in records)]
    names += sorted({s for r in records for s in r.stages_ms} - set(names))
    table: dict[str, dict[str, float]] = {}
    for name in [*names, "wall"]:
        values = [r.wall_ms if name == "wall" else r.stages_ms.get(name, 0.0) for r in records]
        table[name] = {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "mean": sum(values) / len(values),
        }
    return table


def text_table(summary: dict[str, dict[str, float]]) -> str:
    lines = [f"{'stage':14} {'p50 ms':>9} {'p90 ms':>9} {'mean ms':>9}"]
    for name, row in summary.items():
        lines.append(f"{name:14} {row['p50']:9.1f} {row['p90']:9.1f} {row['mean']:9.1f}")
    return "\n".join(lines)


def plot_stages(records: Sequence[StageRecord], path: Path, title: str = "") -> Path:
    """Stacked bars: one per request (sorted by wall time), one colour per stage."""
    from shellfish.bench.plots import _pyplot

    plt = _pyplot()
    ordered = sorted(records, key=lambda r: r.wall_ms)
    summary = summarize(ordered)
    names = [s for s in summary if s != "wall"]
    fig, (ax, side) = plt.subplots(
        1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [4, 1]}, sharey=True
    )
    colours = plt.get_cmap("tab20").colors
    xs = list(range(len(ordered)))
    bottom = [0.0] * len(ordered)
    p50_bottom = 0.0
    for i, name in enumerate(names):
        values = [r.stages_ms.get(name, 0.0) for r in ordered]
        ax.bar(xs, values, bottom=bottom, color=colours[i % 20], label=name, width=0.85)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        median = summary[name]["p50"]
        side.bar([0], [median], bottom=[p50_bottom], color=colours[i % 20], width=0.6)
        p50_bottom += median
    ax.set_xlabel("request (sorted by key-press-to-answer time)")
    ax.set_ylabel("ms")
    ax.set_title(title or "suggestion latency by stage")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    side.set_xticks([0], ["median of\neach stage"])
    side.axhline(summary["wall"]["p50"], color="black", linestyle="--", linewidth=1)
    side.set_title(f"p50 wall {summary['wall']['p50']:.0f} ms", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
