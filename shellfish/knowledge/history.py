"""The user's own shell history as retrieval examples - redacted, and secret lines dropped.

Reads zsh extended-history (``: 1700000000:0;command``) and plain bash history files. Every
line goes through `shellfish.shell.redact`; a line in which any secret was found is dropped
entirely (a redacted command teaches the model nothing and the secret's neighbourhood may
still be sensitive). If the redaction module cannot be imported, no history is indexed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_LINES = 20000
MAX_LEN = 300


def default_history_files(environ: dict[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    out = []
    if env.get("HISTFILE"):
        out.append(Path(env["HISTFILE"]).expanduser())
    home = Path(env.get("HOME") or "~").expanduser()
    out += [home / ".zsh_history", home / ".bash_history"]
    return [p for p in dict.fromkeys(out) if p.is_file()]


def parse_history(text: str) -> list[str]:
    """Commands of a zsh (extended or plain) or bash history file, oldest first."""
    commands: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw
        if not pending and line.startswith(": ") and ";" in line:
            line = line.split(";", 1)[1]
        if line.endswith("\\"):  # zsh continues multi-line commands with a trailing backslash
            pending += line[:-1] + "\n"
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.startswith("#"):
            commands.append(line.strip())
    return commands


def _texts(files: Iterable[Path]) -> Iterator[str]:
    """The text of each readable history file (undecodable bytes replaced)."""
    for path in files:
        try:
            yield path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue


def timed_commands(files: Iterable[Path], *, limit: int = MAX_LINES) -> list[tuple[float, str]]:
    """(time, command) of the lines that record when they ran (zsh extended history), newest
    last, secrets removed as in `history_commands`."""
    try:
        from shellfish.shell.redact import findings
    except ImportError:
        return []
    out: list[tuple[float, str]] = []
    for text in _texts(files):
        for raw in text.splitlines():
            if not raw.startswith(": ") or ";" not in raw:
                continue
            stamp, command = raw[2:].split(";", 1)
            try:
                when = float(stamp.split(":", 1)[0])
            except ValueError:
                continue
            command = command.strip()
            complete = command and len(command) <= MAX_LEN and not command.endswith("\\")
            if complete and not findings(command):
                out.append((when, command))
    return out[-limit:]


def history_commands(files: Iterable[Path], *, limit: int = MAX_LINES) -> list[str]:
    """Distinct single-line commands from `files`, newest first, with secrets removed."""
    try:
        from shellfish.shell.redact import findings
    except ImportError:
        return []
    seen: set[str] = set()
    out: list[str] = []
    for text in _texts(files):
        for command in reversed(parse_history(text)):
            if "\n" in command or len(command) > MAX_LEN or command in seen:
                continue
            seen.add(command)
            if findings(command):
                continue
            out.append(command)
            if len(out) >= limit:
                return out
    return out
