"""How long an onnxruntime session takes to load a graph, and the memory it holds after.

Not a test. Each graph is loaded `--runs` times, each in a fresh process (nothing cached in
the interpreter), with shellfish's session options (`engine.providers.create_session`); prints
the median load time, the resident memory the session added and the process's peak. What
store/quantize.py quotes (weights inside the graph against a `.data` file beside it):

    python benchmarks/session_load.py /tmp/gpt2-int8-inline/model.onnx \\
        $SHELLFISH_BENCH_MODELS/gpt2/onnx-int8/model.onnx
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from pathlib import Path
import psutil
from shellfish.engine.providers import create_session
process = psutil.Process()
before = process.memory_info().rss
t0 = time.perf_counter()
create_session(Path(sys.argv[1]), threads=int(sys.argv[2]))
ms = (time.perf_counter() - t0) * 1000
added = process.memory_info().rss - before
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"ms": ms, "added": added, "peak": peak}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", type=Path, nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for graph in args.graphs:
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(graph), str(args.threads)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        mb = 2**20
        print(
            f"{graph}: load {statistics.median(r['ms'] for r in runs):.0f} ms, "
            f"+{statistics.median(r['added'] for r in runs) / mb:.0f} MB resident, "
            f"peak {statistics.median(r['peak'] for r in runs) / mb:.0f} MB "
            f"(median of {args.runs})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
