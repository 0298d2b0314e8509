"""Wall time of `shellfish suggest` for the README's three requests: cold CLI vs warm daemon.

Not a test: it times whole `shellfish` processes, as a user at a prompt sees them. Uses the
models and knowledge index of the current SHELLFISH_HOME; history logging is off for the run.
Warm runs time each request once, the first time the daemon sees it: a repeat of the same
request would be served almost entirely from the prefix cache and flatter the number.

    SHELLFISH_HOME=... python benchmarks/suggest_latency.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REQUESTS = (
    "list all files including hidden ones in long format",
    "find files larger than 100MB under /var",
    "compress the folder logs into logs.tar.gz",
)


def shellfish(*args: str) -> tuple[float, str]:
    env = {**os.environ, "SHELLFISH_HISTORY_ENABLED": "false"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shellfish", *args], capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"shellfish {' '.join(args)} failed: {proc.stderr.strip()}")
    return elapsed, proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for mode in ("cold", "warm"):
        if mode == "warm":
            shellfish("daemon", "start")
            shellfish("suggest", "show the current date")  # load the model into the daemon
        try:
            for request in REQUESTS:
                flags = ["--no-daemon"] if mode == "cold" else []
                repeats = args.runs if mode == "cold" else 1
                runs = [shellfish("suggest", *flags, request) for _ in range(repeats)]
                times = [t for t, _ in runs]
                rows.append((mode, request, statistics.median(times), runs[-1][1]))
        finally:
            if mode == "warm":
                shellfish("daemon", "stop")
    print(f"{'mode':5} {'median s':>9}  request -> command")
    for mode, request, median, command in rows:
        print(f"{mode:5} {median:9.2f}  {request} -> {command}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
