"""`shellfish.suggest` sits below the client, daemon, server, UI, CLI and the evaluation:
none of its modules imports them, not even lazily inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import shellfish.suggest

ABOVE = ("eval", "client", "daemon", "serve", "ui", "cli")
PACKAGE = Path(shellfish.suggest.__file__).parent


def imported_modules(source: str) -> set[str]:
    """Every module an import statement in `source` names, wherever the statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def upward(names: set[str]) -> list[str]:
    return sorted(
        n
        for n in names
        for top in ABOVE
        if n == f"shellfish.{top}" or n.startswith(f"shellfish.{top}.")
    )


def test_the_walk_sees_lazy_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from shellfish.cli.shell import x\n"
        "def f():\n    import shellfish.daemon.server\n    from shellfish import eval\n"
    )
    assert upward(imported_modules(source)) == [
        "shellfish.cli.shell",
        "shellfish.cli.shell.x",
        "shellfish.daemon.server",
        "shellfish.eval",
    ]


def test_suggest_imports_nothing_above_it() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "pipeline.py", "checks.py", "ranking.py"}
    found = {m.name: upward(imported_modules(m.read_text(encoding="utf-8"))) for m in modules}
    assert {name: bad for name, bad in found.items() if bad} == {}
