"""Compatibility layer over `shellfish.shell.syntax` (the one command-line parser).

Kept only while `shell/danger.py` and `shell/validate.py` still call the old word-list API;
new code uses `syntax.parse` / `syntax.simple_commands` directly. To be deleted once they are
ported.
"""

from __future__ import annotations

import re

from shellfish.shell.grammar import (
    INTERPRETERS,
    KEYWORDS,
    REDIRECT_OPERATORS,
    SEPARATORS,
    WRAPPERS,
)
from shellfish.shell.syntax import SimpleCommand, parse, simple_commands

_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./\[\]{}!^~*?-]+")

__all__ = ["INTERPRETERS", "KEYWORDS", "SEPARATORS", "WRAPPERS", "program_of", "split_commands"]


def _words(command: SimpleCommand) -> list[str]:
    words = list(command.words)
    for r in command.redirects:
        words += [(str(r.fd) if r.fd is not None else "") + r.op, r.target]
    return words


def split_commands(line: str) -> list[tuple[list[str], str]]:
    """Every simple command of `line` (nested ones included) as (words, separator).

    The words are unquoted; each redirection follows them as its operator and its target.
    """
    return [(_words(c), c.separator) for c in simple_commands(line) if c.words or c.redirects]


def program_of(words: list[str]) -> tuple[str, list[str]]:
    """The program word a simple command runs (as written) and its arguments.

    Returns ("", []) for a command that only assigns.
    """
    quoted = " ".join(_quote(w) for w in words)
    commands = parse(quoted).commands
    if not commands or not commands[0].program:
        return "", []
    return commands[0].program, list(commands[0].args)


def _quote(word: str) -> str:
    # Redirection operators stay operators, plain words (keywords, assignments) stay as they
    # are; anything else is quoted into one shell word.
    if word.lstrip("0123456789") in REDIRECT_OPERATORS or _PLAIN.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"
