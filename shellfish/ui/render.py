"""Render a stream of events for a person.

On a terminal: a rich Live region with the answer as Markdown (syntax-highlighted code blocks)
and a status line (model, tokens/s, elapsed). Otherwise: the text as it arrives, plain, on
stdout; chatter on stderr. Ctrl-C while streaming stops the answer cleanly: the producer is
told through `cancel` and closed, the terminal is restored, and the partial text is kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from shellfish.errors import ShellfishError
from shellfish.events import Done, Error, Event, Status, Token

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from shellfish.environment import Environment


class StreamFailed(ShellfishError):
    """An Error event arrived in the stream (errors carried as data, e.g. from the daemon)."""

    def __init__(self, event: Error) -> None:
        super().__init__(event.message, hint=event.hint)
        self.code = event.code


@dataclass
class RenderResult:
    text: str = ""
    done: Done | None = None
    cancelled: bool = False
    tokens: int = 0
    elapsed_s: float = 0.0
    model: str = ""
    statuses: list[Status] = field(default_factory=list)


@dataclass
class _Progress:
    """What the status line shows; pure bookkeeping, no I/O."""

    clock: Callable[[], float]
    start: float = 0.0
    first_token: float | None = None
    tokens: int = 0
    model: str = ""
    backend: str = ""
    message: str = ""

    def line(self, now: float | None = None, final: bool = False) -> str:
        now = self.clock() if now is None else now
        elapsed = now - self.start
        parts = [p for p in (self.model, self.backend) if p]
        if self.tokens:
            parts.append(f"{self.tokens} tokens")
            first = self.first_token if self.first_token is not None else now
            rate = decode_rate(self.tokens, first, now)
            if rate is not None:
                parts.append(f"{rate:.1f} tok/s")
        parts.append(f"{elapsed:.1f}s")
        if self.message and not final:
            parts.append(self.message)
        return " · ".join(parts)


# Below this much decode time a rate is noise (a burst of buffered tokens reads as 10^5 tok/s).
MIN_RATE_SPAN_S = 0.2


def decode_rate(tokens: int, first_token_s: float, end_s: float) -> float | None:
    """Tokens per second while decoding: the tokens after the first over the time after the
    first (which also holds loading and prefill). None when there is too little to measure."""
    span = end_s - first_token_s
    if tokens < 2 or span < MIN_RATE_SPAN_S:
        return None
    return (tokens - 1) / span


def length_note(done: Done, hint: str = "--max-tokens") -> str | None:
    """The line saying an answer was cut at the token limit, or None when it was not."""
    if done.finish_reason != "length":
        return None
    if len(done.texts) > 1:  # completion_tokens counts every sample
        return f"(a sample stopped at the token limit, {hint} to raise)"
    return f"(stopped at {done.completion_tokens} tokens, {hint} to raise)"


class StreamRenderer:
    """Consume events and show them. `live=None` means: live when the console is a terminal."""

    def __init__(
        self,
        console: Console,
        err: IO[str],
        *,
        live: bool | None = None,
        markdown: bool = True,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
        stop_notice: bool = True,
    ) -> None:
        self.console = console
        self.err = err
        self.live = console.is_terminal if live is None else live
        self.markdown = markdown
        self.verbose = verbose
        self.clock = clock
        # Off when the caller says it in its own words (the REPL): one notice per Ctrl-C.
        self.stop_notice = stop_notice

    def render(
        self,
        events: Iterable[Event],
        *,
        cancel: threading.Event | None = None,
        model: str = "",
    ) -> RenderResult:
        """Show `events`; returns what was shown. Raises StreamFailed on an Error event and
        lets ShellfishError from the producer through; Ctrl-C returns a cancelled result."""
        progress = _Progress(clock=self.clock, start=self.clock(), model=model)
        result = RenderResult(model=model)
        parts: list[str] = []
        iterator = iter(events)
        try:
            if self.live:
                self._render_live(iterator, progress, result, parts)
            else:
                self._render_plain(iterator, progress, result, parts)
        except KeyboardInterrupt:
            result.cancelled = True
            if cancel is not None:
                cancel.set()
            _close(iterator)
            if self.stop_notice:
                self._note("\n[stopped]" if parts and not self.live else "[stopped]")
            elif parts and not self.live:
                with contextlib.suppress(OSError, ValueError):
                    self.console.file.write("\n")  # end the partial line
        finally:
            result.text = (
                result.done.text if result.done and not result.cancelled else "".join(parts)
            )
            result.tokens = progress.tokens
            result.elapsed_s = self.clock() - progress.start
            result.model = progress.model
        if result.done is not None and result.done.finish_reason == "cancelled":
            result.cancelled = True
        return result

    # -- shared bookkeeping -------------------------------------------------------------------

    def _note(self, text: str) -> None:
        try:
            self.err.write(text + "\n")
            self.err.flush()
        except (OSError, ValueError):
            pass

    def _status(self, event: Status, progress: _Progress, result: RenderResult) -> bool:
        """Update the progress from a Status; True when it must be shown in full."""
        result.statuses.append(event)
        data = event.data or {}
        if isinstance(data.get("model"), str) and data["model"]:
            progress.model = data["model"]
        if isinstance(data.get("backend"), str):
            progress.backend = data["backend"]
        progress.message = event.message
        return bool(data.get("notice")) or "retry" in data or "fallback" in data

    def _token(self, event: Token, progress: _Progress, parts: list[str]) -> bool:
        if event.index != 0:
            return False  # extra samples are listed by the Done event's texts
        if progress.first_token is None:
            progress.first_token = self.clock()
        progress.tokens += 1
        progress.message = ""
        parts.append(event.text)
        return True

    def _done(self, event: Done, progress: _Progress, result: RenderResult) -> None:
        result.done = event
        progress.model = event.model or progress.model
        progress.backend = event.backend or progress.backend
        if event.completion_tokens:
            progress.tokens = event.completion_tokens

    # -- plain --------------------------------------------------------------------------------

    def _render_plain(
        self, events: Iterator[Event], progress: _Progress, result: RenderResult, parts: list[str]
    ) -> None:
        out = self.console.file
        for event in events:
            if isinstance(event, Token):
                if self._token(event, progress, parts):
                    out.write(event.text)
                    out.flush()
            elif isinstance(event, Status):
                if self._status(event, progress, result) or self.verbose:
                    self._note(event.message)
            elif isinstance(event, Done):
                self._done(event, progress, result)
                if not parts and event.text:
                    parts.append(event.text)
                    out.write(event.text)
                if parts and not "".join(parts).endswith("\n"):
                    out.write("\n")
                out.flush()
                if self.verbose:
                    self._note(progress.line(final=True))
            elif isinstance(event, Error):
                if parts:
                    out.write("\n")
                    out.flush()
                raise StreamFailed(event)

    # -- live (rich) --------------------------------------------------------------------------

    def _view(self, text: str, status: str, final: bool = False) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        body: RenderableType
        if self.markdown and text:
            from rich.markdown import Markdown

            body = Markdown(text, code_theme="monokai")
        else:
            body = Text(text)
        line = Text(status, style="dim" if final else "bold cyan")
        return Group(body, line) if text else line

    def _render_live(
        self, events: Iterator[Event], progress: _Progress, result: RenderResult, parts: list[str]
    ) -> None:
        from rich.live import Live

        # A soft-wrapping console (right for piped text) makes the live region crop each
        # paragraph to one screen line; the live view must wrap to the terminal's width.
        soft_wrap, self.console.soft_wrap = self.console.soft_wrap, False
        try:
            self._live(Live, events, progress, result, parts)
        finally:
            self.console.soft_wrap = soft_wrap

    def _live(
        self,
        live_cls: Any,
        events: Iterator[Event],
        progress: _Progress,
        result: RenderResult,
        parts: list[str],
    ) -> None:
        with live_cls(
            self._view("", progress.line()),
            console=self.console,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            try:
                for event in events:
                    if isinstance(event, Token):
                        self._token(event, progress, parts)
                    elif isinstance(event, Status):
                        if self._status(event, progress, result):
                            live.console.print(event.message, style="yellow", markup=False)
                    elif isinstance(event, Done):
                        self._done(event, progress, result)
                        if not parts and event.text:
                            parts.append(event.text)
                    elif isinstance(event, Error):
                        raise StreamFailed(event)
                    live.update(self._view("".join(parts), progress.line()))
            finally:
                # Whatever happened, leave the final text and a dim summary line behind.
                final = "".join(parts)
                if result.done is None and not final:
                    live.update(self._view("", ""), refresh=True)
                else:
                    live.update(
                        self._view(final, progress.line(final=True), final=True), refresh=True
                    )


def _close(iterator: Any) -> None:
    """Close a generator so the producer's cleanup (sockets, sessions) runs now."""
    close = getattr(iterator, "close", None)
    if close is not None:
        # The producer's own cleanup failing must not hide the Ctrl-C.
        with contextlib.suppress(Exception):
            close()


def render_stream(
    events: Iterable[Event],
    env: Environment,
    *,
    markdown: bool = True,
    verbose: bool = False,
    cancel: threading.Event | None = None,
) -> Done | None:
    """Show a stream for a one-shot command; returns its Done (None when none came).

    Ctrl-C stops the answer cleanly (producer cancelled and closed, terminal restored) and
    is then re-raised, so the CLI exits with status 130.
    """
    renderer = StreamRenderer(
        env.console, env.stderr, live=env.stdout_isatty, markdown=markdown, verbose=verbose
    )
    result = renderer.render(events, cancel=cancel)
    if result.cancelled and result.done is None:
        raise KeyboardInterrupt
    if result.done is not None:
        note = length_note(result.done)
        if note:
            env.info(note)
    return result.done


def show_command(env: Environment, commands: list[str], warnings: Iterable[str] = ()) -> None:
    """Show suggested commands on a terminal: the first highlighted, alternatives numbered,
    warnings (danger, validation) on stderr."""
    from rich.syntax import Syntax

    for warning in warnings:
        env.err_console.print(f"warning: {warning}", style="bold yellow", markup=False)
    for number, command in enumerate(commands, start=1):
        if len(commands) > 1:
            env.console.print(f"{number}.", style="dim", end=" ")
        env.console.print(Syntax(command, "bash", theme="monokai", background_color="default"))
