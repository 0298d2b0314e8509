"""Progress reporting for long store steps (download, assemble, convert, quantize).

Library code reports through a `Progress` object and never prints; the CLI passes
`RichProgress` (bars on stderr) to a terminal and `PlainProgress` (a line now and then) to a
log or a pipe, tests pass `RecordingProgress`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Progress:
    """No-op base: `task` starts a step, `advance` moves it, `done` ends it."""

    def task(
        self, key: str, description: str, total: int | None = None, unit: str = "bytes"
    ) -> None:
        """Start a step; `unit` is "bytes" (shown as sizes) or a count noun ("steps", "files")."""

    def advance(self, key: str, amount: int = 1) -> None:
        pass

    def describe(self, key: str, description: str) -> None:
        """Replace a step's description (e.g. to show the current loss and rate)."""

    def done(self, key: str) -> None:
        pass

    def note(self, message: str) -> None:
        """A one-line status message (e.g. "using cached wheel")."""

    def close(self) -> None:
        pass

    def advancer(self, key: str) -> Any:
        return lambda n: self.advance(key, n)


class RecordingProgress(Progress):
    """Keeps every call, for tests."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.totals: dict[str, int | None] = {}
        self.amounts: dict[str, int] = {}

    def task(
        self, key: str, description: str, total: int | None = None, unit: str = "bytes"
    ) -> None:
        self.events.append(("task", key, total))
        self.totals[key] = total
        self.amounts.setdefault(key, 0)

    def advance(self, key: str, amount: int = 1) -> None:
        self.amounts[key] = self.amounts.get(key, 0) + amount

    def done(self, key: str) -> None:
        self.events.append(("done", key, self.amounts.get(key, 0)))

    def note(self, message: str) -> None:
        self.events.append(("note", message, None))


@dataclass
class _Step:
    description: str
    total: int | None
    unit: str
    started: float
    completed: int = 0
    reported: float = 0.0  # when its last line was written
    # the rate behind "time left" is measured from here: the last line, or the first advance
    # when it came at once (a resumed run's jump to where it left off is not a rate)
    since: float = 0.0
    since_completed: int = 0
    moved: bool = False


class PlainProgress(Progress):
    """Plain lines on a stream that is not a terminal (a log file, a pipe, CI): one when a step
    starts, one every `every_s` seconds while it moves (amount, share, elapsed, time left), one
    when it ends. Rich's bars draw nothing there until they stop, which leaves an hour of
    training silent in a log."""

    def __init__(
        self,
        stream: IO[str],
        *,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every_s = every_s
        self.clock = clock
        self._steps: dict[str, _Step] = {}

    def _line(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the work it reports on
            pass

    def task(
        self, key: str, description: str, total: int | None = None, unit: str = "bytes"
    ) -> None:
        now = self.clock()
        self._steps[key] = _Step(description, total, unit, now, reported=now, since=now)
        size = f" ({_amount(total, unit)})" if total else ""
        self._line(f"{description}{size} ...")

    def advance(self, key: str, amount: int = 1) -> None:
        step = self._steps.get(key)
        if step is None:
            return
        step.completed += amount
        now = self.clock()
        finished = step.total is not None and step.completed >= step.total  # `done` says so
        if now - step.reported >= self.every_s and not finished:
            self._line(f"{step.description}: {self._status(step, now)}")
            step.reported = step.since = now
            step.since_completed = step.completed
        elif not step.moved:
            step.since, step.since_completed = now, step.completed
        step.moved = True

    def describe(self, key: str, description: str) -> None:
        if key in self._steps:
            self._steps[key].description = description

    def done(self, key: str) -> None:
        step = self._steps.pop(key, None)
        if step is None:
            return
        amount = step.total if step.total is not None else step.completed
        self._line(
            f"{step.description}: done ({_amount(amount, step.unit)} in "
            f"{_duration(self.clock() - step.started)})"
        )

    def note(self, message: str) -> None:
        self._line(message)

    @staticmethod
    def _status(step: _Step, now: float) -> str:
        elapsed = f"{_duration(now - step.started)} elapsed"
        if not step.total:
            return f"{_amount(step.completed, step.unit)}, {elapsed}"
        # "1.0 GB of 3.0 GB", "15 of 300 steps"
        done = _amount(step.completed, step.unit) if step.unit == "bytes" else f"{step.completed:,}"
        text = f"{done} of {_amount(step.total, step.unit)} ({step.completed / step.total:.0%})"
        rate = (step.completed - step.since_completed) / max(now - step.since, 1e-9)
        if rate > 0 and step.completed < step.total:
            left = (step.total - step.completed) / rate
            return f"{text}, {elapsed}, about {_duration(left)} left"
        return f"{text}, {elapsed}"


def _amount(n: int | None, unit: str) -> str:
    if n is None:
        return "?"
    if unit != "bytes":
        return f"{n:,} {unit[:-1] if n == 1 and unit.endswith('s') else unit}"  # 1 file
    for size, name in ((10**9, "GB"), (10**6, "MB"), (10**3, "kB")):  # as rich's bars
        if n >= size:
            return f"{n / size:.1f} {name}"
    return f"{n} bytes"


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class RichProgress(Progress):
    """Rich progress bars on a (stderr) console."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as _RichProgress
        from rich.text import Text

        class AmountColumn(ProgressColumn):
            """Sizes for byte steps, "3/4 steps" for counted ones."""

            def __init__(self) -> None:
                super().__init__()
                self._bytes = DownloadColumn()

            def render(self, task: Any) -> Any:
                unit = task.fields.get("unit", "bytes")
                if unit == "bytes":
                    return self._bytes.render(task)
                total = "?" if task.total is None else f"{task.total:.0f}"
                return Text(f"{task.completed:.0f}/{total} {unit}", style="progress.download")

        self.console = console
        self._bars = _RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            AmountColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._ids: dict[str, Any] = {}
        self._bars.start()

    def task(
        self, key: str, description: str, total: int | None = None, unit: str = "bytes"
    ) -> None:
        self._ids[key] = self._bars.add_task(description, total=total, unit=unit)

    def advance(self, key: str, amount: int = 1) -> None:
        if key in self._ids:
            self._bars.advance(self._ids[key], amount)

    def describe(self, key: str, description: str) -> None:
        if key in self._ids:
            self._bars.update(self._ids[key], description=description)

    def done(self, key: str) -> None:
        if key in self._ids:
            task_id = self._ids[key]
            task = self._bars.tasks[task_id] if task_id < len(self._bars.tasks) else None
            if task is not None and task.total is None:
                self._bars.update(
                    task_id, total=max(task.completed, 1), completed=max(task.completed, 1)
                )
            elif task is not None and task.total is not None:
                self._bars.update(task_id, completed=task.total)

    def note(self, message: str) -> None:
        self._bars.console.print(message, highlight=False)

    def close(self) -> None:
        self._bars.stop()
