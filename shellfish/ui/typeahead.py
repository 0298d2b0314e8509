"""Keys typed while an answer streams: held back from the screen, handed to the next prompt.

Between two prompts nothing reads the terminal, which is in cooked mode: typed keys are echoed
into the live answer (breaking its redraw) and reach the next prompt only as a half-edited
line. While an answer streams, `HeldTyping` turns echo and line editing off (keeping ISIG, so
Ctrl-C still stops the answer), reads whatever was typed, and stores it as prompt_toolkit
typeahead, which the next prompt processes as if typed there (Enter included).
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from shellfish.events import Event


class HeldTyping:
    """Context manager over a prompt_toolkit `Input`; a no-op when it is not a terminal."""

    def __init__(self, app_input: Any) -> None:
        self.input = app_input
        self.fd: int | None = None
        self.data = b""
        self._saved: list[Any] | None = None

    def __enter__(self) -> HeldTyping:
        try:
            fd = int(self.input.fileno()) if self.input is not None else -1
        except (AttributeError, OSError, ValueError, NotImplementedError):
            fd = -1
        if fd < 0 or not os.isatty(fd):
            return self
        import termios

        try:
            self._saved = termios.tcgetattr(fd)
            mode = termios.tcgetattr(fd)
            mode[3] &= ~(termios.ECHO | termios.ICANON)
            mode[6][termios.VMIN] = 0
            mode[6][termios.VTIME] = 0
            # TCSANOW, not TCSAFLUSH: a flush would drop exactly the keys we keep.
            termios.tcsetattr(fd, termios.TCSANOW, mode)
        except termios.error:
            self._saved = None
            return self
        self.fd = fd
        return self

    def poll(self) -> None:
        """Read what has been typed so far (never blocks)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError, ValueError):
            while select.select([self.fd], [], [], 0)[0]:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    break
                self.data += chunk

    def polling(self, events: Iterable[Event]) -> Iterator[Event]:
        """`events`, reading typed keys between them; closing this closes `events`."""
        iterator = iter(events)
        try:
            for event in iterator:
                self.poll()
                yield event
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd is None:
            return
        import termios

        self.poll()
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
        self.fd = None
        if self.data:
            store(self.input, self.data.decode("utf-8", errors="replace"))
            self.data = b""


def store(app_input: Any, text: str) -> None:
    """Queue `text` as keys for the next prompt_toolkit application on `app_input`."""
    from prompt_toolkit.input.typeahead import store_typeahead
    from prompt_toolkit.input.vt100_parser import Vt100Parser
    from prompt_toolkit.key_binding import KeyPress

    keys: list[KeyPress] = []
    parser = Vt100Parser(keys.append)
    parser.feed(text)
    parser.flush()
    store_typeahead(app_input, keys)
