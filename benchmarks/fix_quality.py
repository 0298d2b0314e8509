"""How often the fix key turns a broken command into a different, plausible one.

The cases (benchmarks/data/fix_cases.jsonl) are broken commands - program typos, wrong flags
and subcommands, missing files, scripts without the execute bit - each with the exit status it
really has in the sandbox below (`record` measures it: it runs each case once, in the sandbox,
with a 5 s limit; the cases are harmless by construction) and the regexes a good fix matches
(`accept`; null where no right fix exists, such as a file that is nowhere).

`run` sends each case through the real fix path - `shellfish.tasks.run_task`, what the daemon
runs for a widget request - with the context the zsh widget sends, and counts:
  changed    the answer differs from the broken command (whitespace aside)
  plausible  the answer matches one of the case's `accept` regexes
`--as-sent-by old` sends what the widget sent before issue 14 (`exit_status`, no PATH), to
measure the old code (run it with PYTHONPATH pointing at the old tree).

    python benchmarks/fix_quality.py record
    SHELLFISH_HOME=... python benchmarks/fix_quality.py run [--limit N] [--json out.jsonl]
    python benchmarks/fix_quality.py summary out.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES = Path(__file__).resolve().parent / "data" / "fix_cases.jsonl"


def make_sandbox(root: Path) -> Path:
    """The directory every case runs in (the same files for `record` and `run`)."""
    work = root / "project"
    (work / "src").mkdir(parents=True)
    (work / "README.md").write_text("# demo\nfoo\n")
    (work / "notes.txt").write_text("TODO: one\nfoo bar\nthree\n")
    (work / "data.csv").write_text("b,2\na,10\nc,1\n")
    (work / "src" / "main.py").write_text("#!/usr/bin/env python3\nprint('main')\n")
    (work / "build.sh").write_text("#!/usr/bin/env bash\necho built\n")
    (work / "deploy.py").write_text("#!/usr/bin/env python3\nprint('deploy')\n")
    for name in ("src/main.py", "build.sh", "deploy.py"):
        (work / name).chmod(0o644)  # not executable: the permission cases
    subprocess.run(["tar", "-cf", "archive.tar", "notes.txt"], cwd=work, check=True)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    return work


def load_cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


def record() -> None:
    """Run each case once in a fresh sandbox and store its real exit status."""
    cases = load_cases()
    with tempfile.TemporaryDirectory() as tmp:
        work = make_sandbox(Path(tmp))
        for case in cases:
            proc = subprocess.run(
                ["zsh", "-f", "-c", case["command"]],
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=5,
                env={**os.environ, "GIT_PAGER": "cat", "PAGER": "cat"},
            )
            case["exit_status"] = proc.returncode
    CASES.write_text("".join(json.dumps(c) + "\n" for c in cases))
    failing = sum(1 for c in cases if c["exit_status"] != 0)
    print(f"{len(cases)} cases, {failing} fail in the sandbox")


def _key(command: str) -> str:
    return " ".join(command.split())


def judge(command: str, answer: str, accept: list[str] | None) -> tuple[bool, bool]:
    """(changed, plausible) for one answer; quotes do not count (`-m "wip"` is `-m wip`)."""
    changed = bool(answer) and _key(answer) != _key(command)
    bare = _key(answer.replace('"', "").replace("'", ""))
    plausible = bool(changed and accept and any(re.fullmatch(r, bare) for r in accept))
    return changed, plausible


def summarize(results: list[dict[str, Any]], as_sent_by: str, code: str) -> dict[str, Any]:
    """Counts over `results` (each judged again against the current cases file)."""
    accept = {c["command"]: c.get("accept") for c in load_cases()}
    for r in results:
        r["changed"], r["plausible"] = judge(r["command"], r["answer"], accept.get(r["command"]))
    return {
        "code": code,  # which tree was measured
        "as_sent_by": as_sent_by,
        "cases": len(results),
        "changed": sum(r["changed"] for r in results),
        "plausible": sum(r["plausible"] for r in results),
        "with_a_right_fix": sum(bool(accept.get(r["command"])) for r in results),
        "by_kind": {
            kind: {
                "cases": sum(r["kind"] == kind for r in results),
                "plausible": sum(r["plausible"] for r in results if r["kind"] == kind),
            }
            for kind in sorted({r["kind"] for r in results})
        },
        "seconds": round(sum(r["seconds"] for r in results), 1),
    }


def run(args: argparse.Namespace) -> int:
    from shellfish.config import load_settings
    from shellfish.events import Done, Error
    from shellfish.paths import get_paths
    from shellfish.request import TaskRequest
    from shellfish.store.pool import ModelPool
    from shellfish.tasks import run_task

    environ = dict(os.environ)
    paths = get_paths(environ)
    settings = load_settings(None, environ)
    pool = ModelPool(paths, settings)
    cases = load_cases()[args.skip :][: args.limit or None]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = make_sandbox(Path(tmp))
        for case in cases:
            status = int(case["exit_status"])
            context: dict[str, Any] = {
                "source": "zsh",
                "cwd": str(work),
                "shell": "zsh 5.9",
                "os": "linux-gnu",
                "recent": [{"cmd": case["command"], "cwd": str(work), "exit": status}],
            }
            if args.as_sent_by == "old":
                context["exit_status"] = status
            else:
                context.update(last_exit_status=status, path=os.environ.get("PATH", ""))
            request = TaskRequest(task="fix", text=case["command"], context=context)
            started = time.perf_counter()
            answer, error = "", ""
            try:
                for event in run_task(request, pool, settings, paths):
                    if isinstance(event, Done):
                        answer = event.texts[0] if event.texts else ""
                    elif isinstance(event, Error):
                        error = event.message
            except Exception as exc:  # a failed case is a result, not the end of the run
                error = f"{type(exc).__name__}: {exc}"
            changed, plausible = judge(case["command"], answer, case.get("accept"))
            results.append(
                {
                    **case,
                    "answer": answer,
                    "error": error,
                    "changed": changed,
                    "plausible": plausible,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            if args.json:  # one line per case as it ends: a run cut short keeps its results
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(results[-1]) + "\n")
            mark = "+" if plausible else ("~" if changed else "-")
            print(f"{mark} {case['command']!r:40} -> {answer or error!r}", flush=True)
    import shellfish

    summary = summarize(results, args.as_sent_by, str(Path(shellfish.__file__).parent))
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("record", help="measure each case's exit status in the sandbox")
    p = sub.add_parser("run", help="run the cases through the fix path")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--as-sent-by", choices=("new", "old"), default="new")
    p.add_argument("--json", help="append one JSON line per case to this file")
    p.add_argument("--skip", type=int, default=0, help="start at this case")
    p = sub.add_parser("summary", help="judge the results a `run --json` wrote, again")
    p.add_argument("results")
    args = parser.parse_args(argv)
    if args.action == "record":
        record()
        return 0
    if args.action == "summary":
        lines = Path(args.results).read_text().splitlines()
        print(json.dumps(summarize([json.loads(x) for x in lines], "?", "?"), indent=2))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
