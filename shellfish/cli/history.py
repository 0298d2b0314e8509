"""`shellfish history [QUERY]`: browse and search the local log of interactions."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from shellfish.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from shellfish.environment import Environment
    from shellfish.history.log import HistoryEntry


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "history",
        help="browse and search the local log of requests and answers",
        description="The log lives in the data dir (SQLite). Disable it with "
        "`shellfish config set history.enabled false`.",
    )
    p.add_argument("query", nargs="*", help="words to look for in requests and answers")
    p.add_argument("-n", "--limit", type=int, default=20, help="how many entries (default 20)")
    p.add_argument("--task", help="only this task (suggest, explain, ask, ...)")
    p.add_argument("--backend", choices=("local", "daemon", "remote"), help="only this backend")
    p.add_argument("--show", type=int, metavar="ID", help="everything about one entry")
    p.add_argument("--clear", action="store_true", help="delete every entry")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON lines)")
    p.set_defaults(func=cmd_history)


def cmd_history(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.history.log import HistoryLog

    log = HistoryLog(env.paths.history_db)
    if not env.settings.history.enabled:
        env.warn("logging is disabled (history.enabled = false); showing older entries only")
    if args.clear:
        env.info(f"deleted {log.clear()} entries")
        return int(ExitStatus.OK)
    if args.show is not None:
        entry = log.get(args.show)
        if entry is None:
            raise UsageError(f"no history entry {args.show}", hint="`shellfish history` lists them")
        _show(entry, env, as_json=args.json)
        return int(ExitStatus.OK)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    entries = log.search(
        " ".join(args.query) or None, task=args.task, backend=args.backend, limit=args.limit
    )
    if args.json:
        for entry in entries:
            env.stdout.write(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n")
    elif not entries:
        env.info(
            "no matching entries"
            if args.query or args.task or args.backend
            else f"the log is empty ({env.paths.history_db})"
        )
    else:
        for entry in reversed(entries):  # oldest first, newest next to the prompt
            env.stdout.write(_line(entry) + "\n")
    env.stdout.flush()
    return int(ExitStatus.OK)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _line(entry: HistoryEntry) -> str:
    lines = entry.response.splitlines()
    if entry.task in ("suggest", "fix") and len(lines) > 1:
        # one command per line, the first is what the user got: joined, three commands read
        # as one ("ls -l ls -alrt `pwd`")
        more = f" (+{len(lines) - 1} more)"
        response = _cut(" ".join(lines[0].split()), 60 - len(more)) + more
    else:
        response = _cut(" ".join(entry.response.split()), 60)
    return (
        f"{entry.id:>5}  {_when(entry.ts)}  {entry.task:<9} {entry.backend:<6} "
        f"{_cut(' '.join(entry.request.split()), 50)}  ->  {response}"
    )


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(entry: HistoryEntry, env: Environment, *, as_json: bool) -> None:
    if as_json:
        env.stdout.write(json.dumps(entry.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    rate = entry.completion_tokens / (entry.total_ms / 1000) if entry.total_ms else 0.0
    lines = [
        f"id:       {entry.id}",
        f"when:     {_when(entry.ts)}",
        f"task:     {entry.task}",
        f"model:    {entry.model} ({entry.backend})",
        f"tokens:   {entry.prompt_tokens} prompt + {entry.completion_tokens} new "
        f"({rate:.1f} tok/s)",
        f"timings:  load {entry.load_ms:.0f} ms, first token {entry.first_token_ms:.0f} ms, "
        f"total {entry.total_ms:.0f} ms",
        f"finish:   {entry.finish_reason}",
        "request:",
        entry.request,
        "answer:",
        entry.response,
    ]
    if entry.context:
        lines += ["context:", json.dumps(entry.context, indent=2, ensure_ascii=False)]
    if entry.options:
        lines += ["options:", json.dumps(entry.options, indent=2, ensure_ascii=False)]
    env.stdout.write("\n".join(lines) + "\n")
