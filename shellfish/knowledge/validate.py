"""Validation of suggested commands against this machine's knowledge.

`flag_problems` checks every flag of every program in a command line against the options the
program documents locally (its man page or `--help`). It plugs into
`shellfish.shell.validate.validate_command` (program installed, parses, danger) as a `check`.
Programs we know no options for are not judged: no documentation is not evidence of a wrong
flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shellfish.knowledge.index import KnowledgeIndex
    from shellfish.paths import Paths
    from shellfish.tasks.request import TaskRequest

ALWAYS_OK = frozenset({"--help", "--version", "-h"})


def flag_problems(command: str, known: Callable[[str], set[str] | None]) -> list[str]:
    """One problem line per flag in `command` that its program does not document."""
    from shellfish.eval.metric import command_structure

    problems = []
    for utility, flags in command_structure(command):
        documented = known(utility)
        if documented is None:
            continue
        for flag in sorted(flags):
            if flag in ALWAYS_OK or flag in documented or re.fullmatch(r"-\d+", flag):
                continue
            if flag.startswith("--") and any(
                d.startswith(flag) for d in documented if d.startswith("--")
            ):
                continue  # GNU accepts unambiguous prefixes of long options
            problems.append(f"{utility}: unknown flag {flag} (not in the local man page / --help)")
    return problems


def validate_one(
    command: str, shell: str, index: KnowledgeIndex | None, cwd: str | None = None
) -> Any:
    """A `shellfish.shell.validate.Validation` for `command`, with the flag check plugged in."""
    from shellfish.shell.validate import validate_command

    checks = []
    if index is not None:
        checks.append(lambda cmd: flag_problems(cmd, index.known_flags))
    return validate_command(command, shell, checks=checks, cwd=cwd)


def validate_candidates(
    candidates: list[Any], request: TaskRequest, paths: Paths, index: KnowledgeIndex | None = None
) -> None:
    """Fill in `valid`, `problems`, `danger` and `warnings` of each candidate (in place)."""
    ctx = request.context or {}
    shell = str(ctx.get("shell") or "bash").rsplit("/", 1)[-1]
    cwd = str(ctx["cwd"]) if ctx.get("cwd") else None
    if cwd is not None:
        from pathlib import Path

        cwd = cwd if Path(cwd).is_dir() else None
    for c in candidates:
        result = validate_one(c.command, shell, index, cwd)
        c.valid = bool(result.ok)
        c.problems = list(result.problems)
        c.danger = list(result.danger)
        c.warnings = [f"danger: {d}" for d in result.danger]
