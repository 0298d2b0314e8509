"""The package layering, written down once and checked by walking every import.

Each package of `shellfish` sits in one layer; a module may import from its own package, from
other packages of its own layer, and from lower layers - never from a higher layer - and no two
packages may import each other (directly or around a longer loop).

What counts as an import: every `import` / `from ... import` anywhere in a module's AST - at the
top, inside functions (the lazy imports STYLE.md asks for still run, so they still couple the
packages) and inside `if TYPE_CHECKING:` blocks. The latter never run, so they cannot make an
import cycle at runtime, but a type from a higher layer in a lower layer's signature is the same
upward coupling a runtime import is: a lower layer that needs a higher one's type gets the type
moved down instead. So they count, and the rule has no exceptions to keep track of.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shellfish"

#: Low to high. A "package" is a subpackage of `shellfish` or one of its top-level modules.
LAYERS: list[tuple[str, set[str], str]] = [
    (
        "base",
        {"shellfish", "errors", "events", "request", "paths", "config", "environment"},
        "what every part shares: the error tree, the typed events, the TaskRequest every part "
        "passes on, paths, settings and the Environment; they know nothing of models, shells "
        "or processes",
    ),
    ("engine", {"engine"}, "runs one ONNX model: tokenizer, sessions, sampling, kv cache"),
    (
        "parts",
        {"store", "knowledge", "shell"},
        "what the tasks are made from: models on disk and in memory (store), the local "
        "knowledge index (knowledge), reading and checking shell text (shell)",
    ),
    (
        "tasks",
        {"tasks", "suggest"},
        "turn a TaskRequest into model calls and typed events, the same in every process "
        "(tasks dispatches; suggest is the suggest/fix pipeline and never imports tasks)",
    ),
    (
        "backends",
        {"remote", "history"},
        "other ends of a request that are not a process of ours: a remote OpenAI-compatible "
        "endpoint, and the local log every answer is recorded in",
    ),
    (
        "servers",
        {"daemon", "serve"},
        "long-running processes serving tasks: the Unix-socket daemon (server and its wire "
        "format) and the OpenAI-compatible HTTP server",
    ),
    (
        "client",
        {"client"},
        "routes one request to the daemon (starting it), this process or a remote, and records it",
    ),
    (
        "offline",
        {"eval", "tune"},
        "offline jobs over data sets: scoring the tasks (eval), fine-tuning a model on "
        "request->command pairs (tune); they run tasks and the store directly, never a client",
    ),
    ("ui", {"ui"}, "what a terminal user sees: the renderer and the REPL (which asks a client)"),
    ("bench", {"bench"}, "times our engine against peers; may use anything below"),
    ("cli", {"cli", "__main__"}, "the thin command line over all of it; nothing imports it"),
]

#: Upward imports that only another helper's files can remove, as (importer, imported)
#: modules. Asserted to be exactly the current set: delete an entry when its import goes.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def _layer_of() -> dict[str, int]:
    index: dict[str, int] = {}
    for number, (_name, packages, _why) in enumerate(LAYERS):
        for package in packages:
            assert package not in index, f"{package} is in two layers"
            index[package] = number
    return index


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The shellfish modules `module` imports (anywhere in the file)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                # `from shellfish.daemon import protocol` imports a module; `from x import name`
                # imports from module x.
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return {m for m in found if m == "shellfish" or m.startswith("shellfish.")}


def _edges() -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(importer package, imported package) -> the (importer, imported) module pairs."""
    modules = _modules()
    edges: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for module, path in modules.items():
        for target in _imports(module, path, set(modules)):
            a, b = _package(module), _package(target)
            if a != b:
                edges[(a, b)].add((module, target))
    return edges


def test_every_package_has_a_layer() -> None:
    layer = _layer_of()
    packages = {_package(m) for m in _modules()}
    assert packages - set(layer) == set(), "add the new package to LAYERS, with why it sits there"
    # `suggest` joins at the merge of the suggest package; the others must exist
    assert set(layer) - packages <= {"suggest"}


def test_no_import_goes_up_a_layer() -> None:
    layer = _layer_of()
    upward = {pair for (a, b), pairs in _edges().items() if layer[b] > layer[a] for pair in pairs}
    assert upward - KNOWN_VIOLATIONS == set(), "import from a lower layer, or move the code down"
    # the known list is exact, so it cannot rot: an entry whose import is gone must go too
    assert KNOWN_VIOLATIONS - upward == set(), "these are fixed now: delete them from the list"


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for (a, b), pairs in _edges().items():
        if pairs - KNOWN_VIOLATIONS:  # a known upward import is reported once, above
            graph[a].add(b)
    groups = _cycles(graph)
    assert groups == [], "packages that import each other: " + "; ".join(map(str, groups))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of packages (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert _cycles(graph) == expected


def test_the_import_walker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from shellfish.cli import main\n"
        "def f():\n"
        "    import shellfish.ui.repl\n"
        "    from ..daemon.protocol import encode_line\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"shellfish.client.sibling", "shellfish.daemon.protocol", "shellfish.ui.repl"}
    assert _imports("shellfish.client.mod", path, known) == {
        "shellfish.client.sibling",
        "shellfish.cli",
        "shellfish.ui.repl",
        "shellfish.daemon.protocol",
    }
