"""`shellfish models list | info | pull | import | quantize | rm | default | verify`."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.errors import ModelError, UsageError

if TYPE_CHECKING:
    from shellfish.environment import Environment
    from shellfish.store.progress import Progress
    from shellfish.store.store import InstalledModel, Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="list, pull, import, quantize and remove models")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda args, env: cmd_list(args, env))

    p = sub.add_parser("list", help="the catalog and what is installed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="everything about one model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("pull", help="download (and convert) a catalog model")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="reinstall even if installed")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("import", help="install a local GGUF, transformers checkpoint or ONNX dir")
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="name to install it under (default: from the path)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "quantize",
        help="int8 quantisation of an fp32 ONNX model (weight-only MatMulNBits; a seq2seq "
        "encoder as int8 GEMMs; a one-graph decoder gets an int8-GEMM prefill graph, and a "
        "GPT-2 export's attention one shared KV buffer)",
    )
    p.add_argument("name")
    p.add_argument(
        "--int8", action="store_true", required=True, help="8-bit weights, int8 compute (required)"
    )
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("rm", help="remove an installed model")
    p.add_argument("name")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("default", help="show or set the default model")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_default)

    p = sub.add_parser("verify", help="re-hash every file of an installed model")
    p.add_argument("name")
    p.set_defaults(func=cmd_verify)


def make_store(env: Environment) -> Store:
    from shellfish.store.store import Store

    return Store(env.paths)


@contextlib.contextmanager
def progress_bars(env: Environment) -> Iterator[Progress]:
    """Progress of the long steps on stderr, always closed: rich bars on a terminal, plain lines
    now and then anywhere else (a log, a pipe), nothing with SHELLFISH_NO_PROGRESS.

    Also the scope of a long install, so SIGTERM (`kill`, a closing terminal's service
    manager) stops it like Ctrl-C: cleanup runs, the converter is killed, the exit status is 130.
    Python's default for SIGTERM ends the process on the spot and leaves both behind.
    """
    from shellfish.store.progress import PlainProgress, Progress, RichProgress

    progress: Progress
    if env.environ.get("SHELLFISH_NO_PROGRESS"):
        progress = Progress()
    elif env.stderr_isatty:
        progress = RichProgress(env.err_console)
    else:
        progress = PlainProgress(env.stderr)
    try:
        with _sigterm_as_interrupt():
            yield progress
    finally:
        progress.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its caller owns signals then
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def loader_validator() -> Any:
    """A smoke load through the engine's loader (its prefill graph too, when it has one): a
    model that does not load is not installed."""
    from shellfish.engine.loader import load_model

    def validate(path: Path, name: str) -> list[str]:
        runner, warnings = load_model(path, name=name, prefill_graph=True)
        runner.close()
        return [str(w) for w in warnings]

    return validate


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _damaged(model: InstalledModel) -> bool:
    return bool(_missing_or_malformed(model))


def _missing_or_malformed(model: InstalledModel) -> list[str] | str:
    try:
        return model.missing_files()
    except ModelError:
        return "malformed manifest"


def model_rows(store: Store) -> list[dict[str, Any]]:
    installed = {m.name: m for m in store.installed()}
    rows = []
    for d in store.catalog:
        m = installed.pop(d.name, None)
        rows.append(
            {
                "name": d.name,
                "installed": m is not None,
                "damaged": bool(m and _damaged(m)),
                "size_on_disk": m.size_on_disk() if m else 0,
                "download_size": d.download_size,
                "family": d.family,
                "tasks": list(d.tasks),
                "providers": ["cpu"],
                "layout": d.sources[0].layout if d.sources else "",
                "aliases": list(d.aliases),
                "description": d.description,
                "path": str(m.path) if m else None,
            }
        )
    for m in installed.values():  # imported / quantised models without a catalog entry
        rows.append(
            {
                "name": m.name,
                "installed": True,
                "damaged": _damaged(m),
                "size_on_disk": m.size_on_disk(),
                "download_size": 0,
                "family": m.family,
                "tasks": m.tasks,
                "providers": list(m.manifest.get("providers", ["cpu"])),
                "layout": m.layout,
                "aliases": [],
                "description": str(m.manifest.get("description", "")),
                "path": str(m.path),
            }
        )
    return rows


def cmd_list(args: argparse.Namespace, env: Environment) -> int:
    store = make_store(env)
    rows = model_rows(store)
    default = env.settings.models.default
    if getattr(args, "json", False):
        env.stdout.write(json.dumps({"default": default, "models": rows}, indent=2) + "\n")
        return 0
    cells = []
    for r in rows:
        state = "damaged" if r["damaged"] else ("yes" if r["installed"] else "-")
        size = (
            _human(r["size_on_disk"])
            if r["installed"]
            else (f"~{_human(r['download_size'])}" if r["download_size"] else "")
        )
        tasks, providers = ",".join(r["tasks"]), ",".join(r["providers"])
        cells.append((r["name"], state, size, r["family"], tasks, providers))
    columns = ("name", "installed", "size", "family", "tasks", "providers")
    if not env.stdout_isatty:
        # A pipe or a file gets whole values, tab-separated, for cut / awk / grep; the
        # default is a column of its own so that the name column stays a name.
        lines = ["\t".join((*columns, "default"))]
        for c in cells:
            lines.append("\t".join((*c, "default" if c[0] == default else "")))
        env.stdout.write("\n".join(lines) + "\n")
        return 0
    from rich.table import Table

    # On a terminal under 100 columns the tasks and providers make way for whole names
    # (`models info NAME` has them); a name is never cut: the other commands take it.
    wide = env.console.width >= 100
    shown = columns if wide else columns[:4]
    table = Table(
        title=f"models ({store.root})",
        title_justify="left",
        caption="* the default" if default in (c[0] for c in cells) else None,
        caption_justify="left",
    )
    longest = max((len(c[0]) + 2 for c in cells), default=4)
    for col in shown:
        if col == "name":
            table.add_column(col, no_wrap=True, min_width=longest)
        elif col in ("tasks", "providers"):
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, justify="right" if col == "size" else "left")
    for c in cells:
        name = c[0] + (" *" if c[0] == default else "")
        table.add_row(name, *(v.replace(",", ", ") for v in c[1 : len(shown)]))  # wrap at words
    env.console.print(table)
    return 0


def cmd_info(args: argparse.Namespace, env: Environment) -> int:
    store = make_store(env)
    desc = store.catalog.find(args.name)
    model = store.get(desc.name if desc else args.name)
    if desc is None and model is None:
        store.catalog.get(args.name)  # raises "unknown model"
    info: dict[str, Any] = {
        "name": desc.name if desc else args.name,
        "installed": model is not None,
    }
    if desc is not None:
        info.update(
            aliases=list(desc.aliases),
            family=desc.family,
            tasks=list(desc.tasks),
            template=desc.template,
            context_length=desc.context_length,
            license=desc.license,
            description=desc.description,
            generation=desc.generation,
            descriptor=desc.origin,
            sources=[
                {
                    "kind": s.kind,
                    "layout": s.layout,
                    "repo": s.repo or None,
                    "packages": [p.requirement for p in s.packages] or None,
                    "size": s.size or None,
                    "sha256": s.sha256 or None,
                }
                for s in desc.sources
            ],
        )
    if model is not None:
        info.update(
            path=str(model.path),
            size_on_disk=model.size_on_disk(),
            missing_files=_missing_or_malformed(model),
            manifest=model.manifest,
        )
    if args.json:
        env.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return 0
    for key, value in info.items():
        if key == "manifest":
            value = {k: v for k, v in value.items() if k not in ("files", "sizes")}
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        env.stdout.write(f"{key}: {value}\n")
    return 0


def cmd_pull(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.store.install import pull

    store = make_store(env)
    store.catalog.get(args.name)  # unknown name: fail before any progress bar
    with progress_bars(env) as progress:
        model, changed = pull(
            store,
            args.name,
            environ=env.environ,
            force=args.force,
            progress=progress,
            validator=loader_validator(),
        )
    verb = "installed" if changed else "already installed"
    env.info(f"{model.name} {verb} at {model.path}")
    return 0


def cmd_import(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.store.install import import_path

    store = make_store(env)
    with progress_bars(env) as progress:
        model = import_path(
            store,
            args.path,
            name=args.name,
            environ=env.environ,
            force=args.force,
            progress=progress,
            validator=loader_validator(),
        )
    env.info(f"{model.name} installed at {model.path} ({model.family}, {model.layout})")
    return 0


def cmd_quantize(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.store.install import quantize_int8

    store = make_store(env)
    with progress_bars(env) as progress:
        model = quantize_int8(
            store, args.name, force=args.force, progress=progress, validator=loader_validator()
        )
    env.info(f"{model.name} installed at {model.path}")
    return 0


def cmd_rm(args: argparse.Namespace, env: Environment) -> int:
    path = make_store(env).remove(args.name)
    env.info(f"removed {path}")
    return 0


def cmd_verify(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.store.store import MANIFEST

    store = make_store(env)
    damaged = store.damaged_dir(args.name)
    if damaged is not None:
        raise ModelError(
            f"model {args.name!r} is damaged: its manifest {damaged / MANIFEST} is missing or "
            "unreadable",
            hint=f"run `shellfish models rm {args.name}` and pull or import it again",
        )
    model = store.get(args.name) or store.resolve(args.name)
    bad = model.verify()
    if bad:
        raise ModelError(
            f"model {model.name!r} is damaged: {', '.join(bad[:3])} do not match",
            hint=f"run `shellfish models pull {model.name} --force`",
        )
    env.info(f"{model.name}: all {len(model.files()[0])} files match")
    return 0


def cmd_default(args: argparse.Namespace, env: Environment) -> int:
    if not args.name:
        env.stdout.write(env.settings.models.default + "\n")
        return 0
    store = make_store(env)
    desc = store.catalog.find(args.name)
    name = desc.name if desc else args.name
    if desc is None and store.get(name) is None:
        raise UsageError(f"unknown model {args.name!r}", hint="`shellfish models list` shows them")
    from shellfish.config import set_config_value

    set_config_value(env.paths.config_file, "models.default", name)
    env.info(
        f"default model: {name}"
        + ("" if store.get(name) else f" (not installed - run `shellfish models pull {name}`)")
    )
    return 0
