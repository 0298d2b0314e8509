"""What the danger rules share: the verdict type, the scope a command runs in, the report.

A `Scope` is the cwd (moved by `cd`), `$HOME`, the request's own cwd and the variables the
line sets itself (`D=/; rm -rf $D`). `paths(word, scope)` resolves a word with them through
`shellfish.shell.places`; `judge(word, scope)` says whether losing it would be a disaster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from shellfish.shell.places import MAX_READINGS, Path, Verdict, protected, resolve

# How a nested command is reached when it runs in a substitution (`$(...)`, backticks, `<(...)`).
SUBSTITUTIONS = frozenset({"$(", "`", "<("})
# Builtins whose NAME=value operands set variables for the commands after them.
DECLARERS = frozenset({"export", "declare", "typeset", "local", "readonly"})
# A copy kept beside the original (`x.bak`, `x.orig`, `x~`): writing it replaces nothing.
BACKUP_NAME = re.compile(r"(?:\.(?:bak|backup|orig|old|save|dist|new|sample)\d*|~)$")


@dataclass(frozen=True)
class Danger:
    code: str  # stable identifier: rm-broad, device-write, pipe-to-shell, ...
    message: str  # one line for the user


def word_set(text: str) -> frozenset[str]:
    """The words of `text` as a set (tables of names written as one string)."""
    return frozenset(text.split())


@dataclass
class Scope:
    """What the commands of one sequence run with: the cwd (as `cd` moves it) and variables."""

    cwd: str | None
    home: str | None
    request_cwd: str | None
    variables: dict[str, list[str]] = field(default_factory=dict)


class Report:
    """The dangers found so far, each code once (the first message for it wins)."""

    def __init__(self) -> None:
        self.found: list[Danger] = []

    def add(self, code: str, message: str) -> None:
        if all(d.code != code for d in self.found):
            self.found.append(Danger(code, message))


def clean_dir(path: str | None) -> str | None:
    """`path` normalised when it is absolute; None (unknown) otherwise."""
    if not path or not path.startswith("/"):
        return None
    return "/" + "/".join(p for p in path.split("/") if p and p != ".")


def _expand_variables(word: str, scope: Scope) -> list[str]:
    """`word` with the line's own variables (`X=/`, `for X in ...`) put in, one per value."""
    words = [word]
    for name, values in scope.variables.items():
        pattern = re.compile(r"\$(?:\{" + re.escape(name) + r"\}|" + re.escape(name) + r"\b)")
        if not pattern.search(word):
            continue
        # a plain-string replacement would read backslashes in the value as escapes
        words = [pattern.sub(v.replace("\\", "\\\\"), w) for w in words for v in values]
        words = words[:MAX_READINGS]  # `$a$b$c` over three loops: a product, kept small
    return words


def paths(word: str, scope: Scope) -> list[Path]:
    """Every path `word` may name in `scope` (see `shellfish.shell.places.resolve`)."""
    out: list[Path] = []
    for expanded in _expand_variables(word, scope):
        out.extend(resolve(expanded, scope.cwd, scope.home))
    return out


def judge(word: str, scope: Scope, *, contents: bool = True) -> Verdict | None:
    """Why losing what `word` names would be a disaster (None: it would not)."""
    for path in paths(word, scope):
        verdict = protected(path, scope.cwd, scope.home, contents=contents)
        if verdict is None and scope.request_cwd and scope.request_cwd != scope.cwd:
            verdict = protected(path, scope.request_cwd, scope.home, contents=contents)
        if verdict is not None:
            return verdict
    return None


def targets(words: Iterable[str], scope: Scope) -> list[Path]:
    """The paths of all `words`."""
    return [p for w in words for p in paths(w, scope)]
