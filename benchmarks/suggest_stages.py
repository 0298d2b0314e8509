"""Suggestion latency by stage through a real daemon, as the zsh widget sees it.

Not a test. Starts a daemon on a scratch SHELLFISH_HOME whose models and knowledge index are
symlinks to those of --home (which is only read), warms it with one request (model load, not
counted), then sends N distinct requests the way the widget does (one connection each,
non-streaming) and prints p50/p90 per stage with the load average, as the machine may be
shared. Each request is new to the daemon: a repeat would come from the prefix cache.

    python benchmarks/suggest_stages.py --home /work/cache/shellfish-home -n 30 \\
        --json docs/bench/suggest-stages.json --plot docs/bench/suggest-stages.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shellfish.bench.stages import StageRecord, ask, plot_stages, summarize, text_table

NL2BASH_DEV = Path(__file__).resolve().parents[1].parent / "shared/eval/nl2bash/dev.nl"
# Used when the NL2Bash dev split (../shared) is absent: everyday requests.
BUILTIN = (
    "list all files including hidden ones in long format",
    "find files larger than 100MB under /var",
    "compress the folder logs into logs.tar.gz",
    "show disk usage of each directory here sorted by size",
    "count the lines in every python file",
    "kill the process listening on port 8080",
    "show the last 50 lines of syslog and keep following it",
    "replace foo with bar in all .txt files",
    "list the ten biggest files in my home directory",
    "show which process uses the most memory",
    "download a file with curl and save it as out.html",
    "delete empty directories under build",
    "show git commits from the last week",
    "find all symlinks in /usr/local",
    "print the current date in ISO format",
    "extract archive.tar.xz into /tmp/x",
)


def scratch_home(source: Path, dest: Path) -> None:
    """A SHELLFISH_HOME that reads `source`'s models and index and writes only to `dest`."""
    for sub in ("models", "knowledge"):
        src = source / "data" / sub
        if not src.is_dir():
            continue
        (dest / "data" / sub).mkdir(parents=True, exist_ok=True)
        for entry in src.iterdir():
            if not entry.name.startswith(".lock"):
                (dest / "data" / sub / entry.name).symlink_to(entry)
    config = source / "config" / "config.toml"
    if config.is_file():
        (dest / "config").mkdir(parents=True, exist_ok=True)
        (dest / "config" / "config.toml").write_text(config.read_text())


def requests(count: int, offset: int) -> tuple[list[str], str]:
    if NL2BASH_DEV.is_file():
        lines = [s.strip() for s in NL2BASH_DEV.read_text().splitlines() if s.strip()]
        return lines[offset : offset + count], f"NL2Bash dev lines {offset}..{offset + count - 1}"
    return list(BUILTIN[:count]), "built-in requests (NL2Bash dev not found)"


def request_args(parser: argparse.ArgumentParser) -> None:
    """--home, -n and --offset: where the models are and which requests (shared by
    benchmarks/widget_latency.py)."""
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("SHELLFISH_HOME", "")))
    parser.add_argument("-n", "--requests", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0, help="first NL2Bash dev line to use")


def checked_requests(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[list[str], str]:
    if not (args.home / "data" / "models").is_dir():
        parser.error(f"{args.home} has no data/models (pass --home or set SHELLFISH_HOME)")
    return requests(args.requests, args.offset)


def shellfish(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "shellfish", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    request_args(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    parser.add_argument("--plot", type=Path, default=None, help="write the stage plot here")
    args = parser.parse_args()
    texts, source = checked_requests(parser, args)
    with tempfile.TemporaryDirectory(prefix="shellfish-stages-") as tmp:
        home = Path(tmp)
        scratch_home(args.home, home)
        env = {**os.environ, "SHELLFISH_HOME": str(home), "SHELLFISH_HISTORY_ENABLED": "false"}
        load_start = os.getloadavg()
        print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} "
              f"{load_start[2]:.2f} ({os.cpu_count()} CPUs)", flush=True)  # fmt: skip
        shellfish(env, "daemon", "start")
        try:
            sock = home / "run" / "daemon.sock"
            t0 = time.perf_counter()
            warm = ask(sock, "show the current date", "warm-up")
            print(f"warm-up (model load, not counted): {(time.perf_counter() - t0):.1f} s "
                  f"-> {warm.command}", flush=True)  # fmt: skip
            records: list[StageRecord] = []
            for i, text in enumerate(texts):
                record = ask(sock, text, f"stages-{i}")
                records.append(record)
                print(f"{record.wall_ms:8.0f} ms  load {record.load_avg:5.2f}  {text[:50]!r}"
                      f" -> {record.command[:40]!r}", flush=True)  # fmt: skip
        finally:
            shellfish(env, "daemon", "stop")
    load_end = os.getloadavg()
    summary = summarize(records)
    print(f"\n{len(records)} requests ({source}); by difference: socket = wall - daemon_ms, "
          "queue = queue_ms, daemon = daemon_ms - queue_ms - suggest_ms, "
          "other = suggest_ms - pipeline stages")  # fmt: skip
    print(text_table(summary))
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "source": source,
            "load_avg_start": load_start,
            "load_avg_end": load_end,
            "cpus": os.cpu_count(),
            "summary": summary,
            "records": [r.to_dict() for r in records],
        }, indent=1))  # fmt: skip
    if args.plot:
        loads = f"load avg {load_start[0]:.1f} -> {load_end[0]:.1f} on {os.cpu_count()} CPUs"
        plot_stages(records, args.plot, f"suggestion latency by stage ({loads})")
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
