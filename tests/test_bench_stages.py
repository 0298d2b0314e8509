"""Suggestion latency by stage (shellfish/bench/stages.py) through a real daemon process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_daemon import Daemon, make_daemon  # noqa: F401

from shellfish.bench.stages import (
    ALL_STAGES,
    StageRecord,
    ask,
    percentile,
    plot_stages,
    split_stages,
    summarize,
    text_table,
)


def test_split_adds_the_outside_stages_by_difference() -> None:
    done = {
        "extra": {
            "stages_ms": {"retrieval": 2.0, "prefill": 50.0, "decode": 30.0},
            "suggest_ms": 85.0,
            "daemon_ms": 90.0,
        }
    }
    stages = split_stages(100.0, done)
    assert stages["socket"] == pytest.approx(10.0)
    assert stages["daemon"] == pytest.approx(5.0)
    assert stages["queue"] == 0.0
    assert stages["other"] == pytest.approx(3.0)
    assert sum(stages.values()) == pytest.approx(100.0)
    # waiting for a busy model is its own stage, out of the daemon's share
    done["extra"]["queue_ms"] = 4.0
    stages = split_stages(100.0, done)
    assert stages["queue"] == 4.0 and stages["daemon"] == pytest.approx(1.0)
    assert sum(stages.values()) == pytest.approx(100.0)
    # clocks read apart can make a difference a hair negative: clamped, never below 0
    assert split_stages(89.9, done)["socket"] == 0.0


def test_percentiles_and_summary() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 90) == pytest.approx(9.0)
    with pytest.raises(ValueError):
        percentile([], 50)
    records = [
        StageRecord("a", 10.0, {"socket": 1.0, "prefill": 9.0}),
        StageRecord("b", 30.0, {"socket": 2.0, "prefill": 20.0, "adapt": 8.0}),
    ]
    summary = summarize(records)
    assert list(summary) == ["socket", "prefill", "adapt", "wall"]
    assert summary["adapt"]["p50"] == pytest.approx(4.0)  # absent counts as 0 ms
    assert summary["wall"]["mean"] == pytest.approx(20.0)
    assert "prefill" in text_table(summary)


def test_ask_times_a_widget_request_through_a_real_daemon(
    make_daemon: Callable[..., Daemon],  # noqa: F811
    tmp_path: Path,
) -> None:
    daemon = make_daemon()
    records = [ask(daemon.paths.socket, f"list files {i}", f"t{i}", model="echo") for i in range(3)]
    for record in records:
        assert record.command  # the echo model answered
        assert set(record.stages_ms) <= set(ALL_STAGES)
        assert {"socket", "queue", "daemon", "retrieval", "prompt", "checks"} <= set(
            record.stages_ms
        )
        assert all(v >= 0 for v in record.stages_ms.values())
        # every millisecond the widget waited is in some stage (up to the pipeline's rounding)
        assert sum(record.stages_ms.values()) == pytest.approx(record.wall_ms, abs=1.0)
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib")
    path = plot_stages(records, tmp_path / "stages.png")
    assert path.stat().st_size > 1000
