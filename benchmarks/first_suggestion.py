"""The user's first `shellfish suggest` after an install: with and without setup's first suggestion.

Not a test. `shellfish setup` answers one suggestion itself after installing the model
suggestions go to, so the system turn every suggestion prompt opens with is on disk
(`<cache dir>/prefixes/`) before the user's first request. This times that first request as a
cold CLI process (no daemon), alternating: the prefix files removed, then either nothing or
setup's step (`shellfish.cli.setup._first_suggestion`), then the request. History logging is off.

    SHELLFISH_HOME=... python benchmarks/first_suggestion.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REQUEST = "list all files including hidden ones in long format"
WARM = (
    "from shellfish.cli.models import make_store\n"
    "from shellfish.cli.setup import _first_suggestion\n"
    "from shellfish.environment import Environment\n"
    "env = Environment.from_process()\n"
    "_first_suggestion(env, make_store(env), env.settings.models.default)\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from shellfish.paths import get_paths

    env = {**os.environ, "SHELLFISH_HISTORY_ENABLED": "false"}
    prefixes = get_paths(env).cache / "prefixes"
    times: dict[str, list[float]] = {"without": [], "after setup's step": []}
    loads = [os.getloadavg()[0]]
    for _ in range(args.runs):
        for how in times:
            for old in prefixes.glob("*.kv.npz"):
                old.unlink()
            if how != "without":
                warm = [sys.executable, "-c", WARM]
                subprocess.run(warm, env=env, check=True, capture_output=True)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "shellfish", "suggest", "--no-daemon", REQUEST],
                env=env,
                check=True,
                capture_output=True,
            )
            times[how].append(time.perf_counter() - start)
        loads.append(os.getloadavg()[0])
    print(f"first `shellfish suggest` after an install, {args.runs} runs each, alternating; "
          f"load {min(loads):.1f}-{max(loads):.1f}")  # fmt: skip
    for how, values in times.items():
        print(f"  {how:20} median {statistics.median(values):.2f} s  "
              f"({', '.join(f'{v:.2f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
