"""Progress on stderr: rich bars on a terminal, plain lines in a log or a pipe."""

from __future__ import annotations

import io
from typing import Any

import pytest

from shellfish.cli.models import progress_bars
from shellfish.environment import Environment
from shellfish.store.progress import PlainProgress, Progress, RichProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_reports_start_moves_and_end_without_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, every_s=30.0, clock=clock)
    progress.task("train", "train", 300, unit="steps")
    for _ in range(10):  # 10 steps in 20 s: under the interval, no line
        clock.now += 2.0
        progress.advance("train")
    assert out.getvalue() == "train (300 steps) ...\n"
    progress.describe("train", "train  loss 0.412  190 tok/s")
    clock.now += 10.0
    progress.advance("train", 5)  # 15 of 300 after 30 s: 9 min 30 s left at this rate
    progress.note("checkpoint saved")
    clock.now += 3600.0
    progress.advance("train", 285)
    progress.done("train")
    assert out.getvalue().splitlines()[1:] == [
        "train  loss 0.412  190 tok/s: 15 of 300 steps (5%), 30 s elapsed, about 9 min 30 s left",
        "checkpoint saved",  # no "300 of 300" line: the end has its own
        "train  loss 0.412  190 tok/s: done (300 steps in 1 h 00 min)",
    ]


def test_plain_progress_sizes_bytes_and_steps_without_a_total() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, every_s=1.0, clock=clock)
    progress.task("get", "download model.onnx", 3 * 10**9)
    clock.now += 90.0
    progress.advance("get", 10**9)
    progress.task("convert", "convert", None, unit="files")
    clock.now += 5.0
    progress.advance("convert", 2)
    progress.done("convert")
    progress.task("graph", "write the prefill graph", 1, unit="files")
    progress.done("graph")
    progress.advance("unknown-step")  # a step never started is ignored, as with the bars
    progress.done("unknown-step")
    assert out.getvalue().splitlines() == [
        "download model.onnx (3.0 GB) ...",
        "download model.onnx: 1.0 GB of 3.0 GB (33%), 1 min 30 s elapsed, about 3 min 00 s left",
        "convert ...",
        "convert: 2 files, 5 s elapsed",
        "convert: done (2 files in 5 s)",
        "write the prefill graph (1 file) ...",
        "write the prefill graph: done (1 file in 0 s)",
    ]


def test_plain_progress_time_left_ignores_a_resumed_runs_jump() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, every_s=30.0, clock=clock)
    progress.task("train", "train", 300, unit="steps")
    progress.advance("train", 200)  # resumed at step 200: done before, not in this run
    clock.now += 30.0
    progress.advance("train", 10)  # 10 steps in 30 s: 90 left take 4 min 30 s
    clock.now += 30.0
    progress.advance("train", 30)  # faster now: 60 left at 1 a second
    assert out.getvalue().splitlines()[1:] == [
        "train: 210 of 300 steps (70%), 30 s elapsed, about 4 min 30 s left",
        "train: 240 of 300 steps (80%), 1 min 00 s elapsed, about 1 min 00 s left",
    ]


def test_plain_progress_survives_a_closed_stream() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    out.close()
    progress.task("get", "download", 10)  # the work goes on; its report is lost
    progress.done("get")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stderr", "environ", "kind"),
    [
        (io.StringIO(), {}, PlainProgress),
        (Tty(), {}, RichProgress),
        (Tty(), {"SHELLFISH_NO_PROGRESS": "1"}, Progress),
        (io.StringIO(), {"SHELLFISH_NO_PROGRESS": "1"}, Progress),
    ],
)
def test_the_cli_picks_bars_on_a_terminal_and_lines_elsewhere(
    stderr: Any, environ: dict[str, str], kind: type
) -> None:
    env = Environment(stdout=io.StringIO(), stderr=stderr, environ=environ)
    with progress_bars(env) as progress:
        assert type(progress) is kind
        progress.task("get", "download", 10)
        progress.done("get")
    if kind is PlainProgress:
        assert stderr.getvalue() == "download (10 bytes) ...\ndownload: done (10 bytes in 0 s)\n"
