"""`shellfish knowledge build | pull tldr | status | search QUERY`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from shellfish.environment import Environment
from shellfish.errors import ExitStatus, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "knowledge",
        help="the local knowledge index behind suggestions",
        description=(
            "Build and inspect the local index of installed programs, their man pages and --help "
            "text, your (redacted) shell history, tldr pages and request/command pairs."
        ),
    )
    sub = p.add_subparsers(dest="knowledge_command", metavar="ACTION")
    b = sub.add_parser(
        "build", help="build or refresh the index (only changed programs are re-read)"
    )
    b.add_argument(
        "--pairs",
        nargs=2,
        metavar=("NL", "CM"),
        help="aligned request / command files to retrieve examples from (remembered)",
    )
    b.add_argument(
        "--no-help", action="store_true", help="never run `PROGRAM --help` (man pages only)"
    )
    b.add_argument("--no-history", action="store_true", help="leave shell history out")
    b.add_argument(
        "--no-shipped",
        action="store_true",
        help="leave out the NL2Bash train pairs and tldr pages shipped with shellfish",
    )
    b.add_argument(
        "--help-timeout",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds before a hanging --help is killed (default 2)",
    )
    b.set_defaults(func=_build)
    pull = sub.add_parser("pull", help="download a knowledge source")
    pull.add_argument("source", choices=("tldr",), help="what to download")
    pull.add_argument(
        "--url",
        help="archive URL or local zip path (default: $SHELLFISH_TLDR_URL or the official release)",
    )
    pull.add_argument(
        "--no-build", action="store_true", help="download only; do not rebuild the index"
    )
    pull.set_defaults(func=_pull)
    s = sub.add_parser("status", help="what the index holds")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
    q = sub.add_parser("search", help="show what a request retrieves")
    q.add_argument("query", nargs="+")
    q.add_argument("-k", type=int, default=8, help="how many examples (default 8)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_search)
    p.set_defaults(func=_usage, knowledge_parser=p)


def _usage(args: argparse.Namespace, env: Environment) -> int:
    args.knowledge_parser.print_help(env.stderr)
    return ExitStatus.USAGE


def _build(args: argparse.Namespace, env: Environment) -> int:
    pairs = None
    if args.pairs:
        nl, cm = (Path(p).expanduser() for p in args.pairs)
        for f in (nl, cm):
            if not f.is_file():
                raise UsageError(
                    f"{f} does not exist", hint="--pairs takes a request file and a command file"
                )
        pairs = (nl.resolve(), cm.resolve())
    if args.help_timeout <= 0:
        raise UsageError("--help-timeout must be > 0")
    env.stdout.write(
        build(
            env,
            pairs=pairs,
            history=not args.no_history,
            shipped=not args.no_shipped,
            run_help=not args.no_help,
            help_timeout_s=args.help_timeout,
        )
        + "\n"
    )
    return ExitStatus.OK


def build(
    env: Environment,
    *,
    pairs: tuple[Path, Path] | None = None,
    history: bool = True,
    shipped: bool = True,
    run_help: bool = True,
    help_timeout_s: float = 2.0,
) -> str:
    """Build or refresh the index under env.paths.knowledge; one line saying what it holds."""
    from shellfish.knowledge.history import default_history_files
    from shellfish.knowledge.index import BuildOptions, build_index

    env.info("indexing programs on PATH, man pages and --help (first run takes a minute)...")
    report = build_index(
        env.paths.knowledge,
        BuildOptions(
            path_value=env.environ.get("PATH", ""),
            history_files=default_history_files(env.environ) if history else [],
            pairs=pairs,
            shipped=shipped,
            run_help=run_help,
            help_timeout_s=help_timeout_s,
        ),
    )
    return (
        f"indexed {report.programs} programs ({report.updated} read, {report.kept} unchanged, "
        f"{report.removed} gone), {report.options} options, examples: "
        + ", ".join(f"{k} {v}" for k, v in report.examples.items())
        + f" in {report.seconds:.1f} s"
    )


def _pull(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.knowledge.tldr import DEFAULT_URL, download

    url = args.url or env.environ.get("SHELLFISH_TLDR_URL") or DEFAULT_URL
    dest = env.paths.knowledge / "tldr.zip"
    env.info(f"downloading tldr pages from {url}")
    download(url, dest)
    env.stdout.write(f"saved {dest}\n")
    if not args.no_build:
        env.stdout.write(build(env) + "\n")
    return ExitStatus.OK


def _status(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.knowledge.index import KnowledgeIndex

    info = KnowledgeIndex.load(env.paths.knowledge).status()
    if args.json:
        env.stdout.write(json.dumps(info) + "\n")
        return ExitStatus.OK
    env.stdout.write(status_text(info, now=time.time()))
    return ExitStatus.OK


def status_text(info: dict[str, Any], *, now: float) -> str:
    """`knowledge status` for a person: dates, counts with separators, sources by name (the
    JSON form keeps the raw values)."""
    built = info.get("built_at")
    if built:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(built))
        when = f"{stamp} ({_age(now - built)} ago)"
    else:
        when = "never - run `shellfish knowledge build` (`shellfish setup` does)"
    examples = info.get("examples") or {}
    pairs = info.get("pairs")
    lines = [
        f"index: {info['root']}",
        f"built: {when}",
        f"programs: {info['programs']:,} ({info['programs_with_options']:,} with options)",
        f"options: {info['options']:,}",
        "examples: " + (", ".join(f"{k} {v:,}" for k, v in examples.items()) or "none"),
        "pairs: " + (", ".join(str(p) for p in pairs) if pairs else "none"),
        f"tldr: {info.get('tldr') or 'none'}",
    ]
    return "".join(line + "\n" for line in lines)


def _age(seconds: float) -> str:
    minutes = max(int(seconds // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def _search(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.knowledge.index import KnowledgeIndex

    if args.k < 1:
        raise UsageError("-k must be at least 1")
    index = KnowledgeIndex.load(env.paths.knowledge)
    query = " ".join(args.query)
    hits = index.search(query, args.k)
    options = index.option_lines(query, [h.doc for h in hits])
    if args.json:
        env.stdout.write(
            json.dumps(
                {
                    "examples": [
                        {
                            "id": h.doc.id,
                            "score": round(h.score, 3),
                            "text": h.doc.text,
                            "command": h.doc.command,
                        }
                        for h in hits
                    ],
                    "options": options,
                }
            )
            + "\n"
        )
        return ExitStatus.OK
    for h in hits:
        env.stdout.write(
            f"{h.score:6.2f}  {h.doc.command}\n        {h.doc.text or '(' + h.doc.kind + ')'}\n"
        )
    if options:
        env.stdout.write("options:\n" + "".join(f"  {line}\n" for line in options))
    return ExitStatus.OK
