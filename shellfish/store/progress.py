"""Progress reporting for long store steps (download, assemble, convert, quantize).

Library code reports through a `Progress` object and never prints; the CLI passes
`RichProgress` (bars on stderr), tests pass `RecordingProgress`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
