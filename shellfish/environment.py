"""The `Environment` passed to every command: streams, TTY facts, variables, paths, settings.

Tests build their own Environment instead of monkeypatching globals. stdout carries results
only; progress and chatter go to stderr.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, TYPE_CHECKING

from shellfish.paths import Paths, get_paths

if TYPE_CHECKING:
    from rich.console import Console

    from shellfish.config import Settings


@dataclass
class Environment:
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def from_process(cls) -> Environment:
        return cls()

    @property
    def stdout_isatty(self) -> bool:
        return _isatty(self.stdout)

    @property
    def stdin_isatty(self) -> bool:
        return _isatty(self.stdin)

    @property
    def stderr_isatty(self) -> bool:
        return _isatty(self.stderr)

    @cached_property
    def paths(self) -> Paths:
        paths = get_paths(self.environ)
        for note in paths.notes:  # e.g. a runtime dir taken by another user: say where we went
            self.warn(note)
        return paths

    @cached_property
    def settings(self) -> Settings:
        from shellfish.config import load_settings

        return load_settings(self.paths.config_file, self.environ)

    @cached_property
    def console(self) -> Console:
        """Rich console for results on stdout (plain when stdout is not a TTY)."""
        from rich.console import Console

        return Console(
            file=self.stdout,
            force_terminal=None,
            no_color="NO_COLOR" in self.environ,
            highlight=False,
            soft_wrap=True,
        )

    @cached_property
    def err_console(self) -> Console:
        """Rich console for progress and chatter on stderr."""
        from rich.console import Console

        return Console(file=self.stderr, no_color="NO_COLOR" in self.environ, highlight=False)

    def read_stdin(self) -> str:
        """All of stdin as text. Bytes that are not UTF-8 become U+FFFD: a text stream would
        raise (UTF-8 locale) or hand on lone surrogates (C locale)."""
        buffer = getattr(self.stdin, "buffer", None)
        if buffer is not None:
            data: bytes = buffer.read()
            return data.decode("utf-8", errors="replace")
        from shellfish.request import clean_text

        text: str = clean_text(self.stdin.read())
        return text

    def override_settings(self, dotted: dict[str, object]) -> None:
        """Apply command-line flags on top of file and environment settings."""
        self.__dict__["settings"] = self.settings.with_overrides(dotted)

    def error(self, message: str) -> None:
        self.stderr.write(f"shellfish: error: {message}\n")
        self.stderr.flush()

    def warn(self, message: str) -> None:
        self.stderr.write(f"shellfish: warning: {message}\n")
        self.stderr.flush()

    def info(self, message: str) -> None:
        self.stderr.write(f"{message}\n")
        self.stderr.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
