"""Daemon latency benchmark (not a test): cold CLI vs warm daemon, protocol overhead, prefix cache.

    .venv/bin/python benchmarks/daemon_latency.py --model-dir tests/fixtures/generated/causal-*/gpt2
    .venv/bin/python benchmarks/daemon_latency.py --model qwen2.5-coder-0.5b-instruct   # installed

With --model-dir the model is installed into a temporary SHELLFISH_HOME; with --model the
current SHELLFISH_HOME's store is used (and its daemon socket, so stop your daemon first).
Everything runs on the same model in one run and prints one table:

- cold CLI: a fresh `shellfish suggest --no-daemon` process (imports + model load + answer)
- warm CLI: a fresh `shellfish suggest` process answered by the running daemon
- warm client: DaemonClient.stream in this process; wall time vs the daemon's own time for the
  request (`daemon_ms`) and the model's (`total_ms`): the difference is the round-trip overhead
- prefix cache: in-process on the same model, prefill with the cache cleared vs warm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUESTS = [
    "list all files in the current directory",
    "show disk usage of this folder",
    "find files larger than 100 MB",
    "count lines in every python file",
    "compress the logs folder into a tarball",
    "show the 10 newest files",
]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def install(model_dir: Path, home: Path) -> str:
    name = "bench-model"
    dest = home / "data" / "models" / name
    shutil.copytree(model_dir, dest)
    manifest = dest / "shellfish-model.json"
    data = json.loads(manifest.read_text()) if manifest.exists() else {}
    data.update({"name": name, "tasks": ["suggest", "explain", "ask", "translate", "prompt"]})
    data.setdefault("family", "causal")
    data.setdefault("files", {})
    manifest.write_text(json.dumps(data))
    return name


def cli(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "shellfish", *args], env=env, capture_output=True, text=True
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"shellfish {' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model-dir", type=Path, help="an ONNX model dir to install in a temp home")
    group.add_argument("--model", help="an installed model in the current SHELLFISH_HOME")
    parser.add_argument("--runs", type=int, default=5, help="repetitions per measurement")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    env = dict(os.environ)
    tmp = None
    if args.model_dir:
        tmp = Path(tempfile.mkdtemp(prefix="sfb-"))
        env["SHELLFISH_HOME"] = str(tmp)
        name = install(args.model_dir, tmp)
    else:
        name = args.model
    os.environ.update(env)

    from shellfish.client import lifecycle
    from shellfish.client.daemon import DaemonClient
    from shellfish.config import load_settings
    from shellfish.events import Done
    from shellfish.paths import get_paths
    from shellfish.request import TaskRequest
    from shellfish.store.pool import ModelPool
    from shellfish.tasks import run_task

    paths = get_paths(env)
    settings = load_settings(paths.config_file, env)
    gen = {"max_new_tokens": args.max_tokens, "temperature": 0.0}
    flags = ["--model", name, "--max-tokens", str(args.max_tokens), "-t", "0"]
    rows: list[tuple[str, str]] = []
    try:
        lifecycle.stop(paths)
        cold = [
            cli(["suggest", *flags, "--no-daemon", REQUESTS[i % len(REQUESTS)]], env)
            for i in range(args.runs)
        ]
        rows.append(("cold CLI, no daemon (process wall)", f"{median(cold):.0f} ms"))

        lifecycle.start(paths, settings, environ=env)
        client = DaemonClient(paths)
        client.load(name)
        list(client.stream(TaskRequest("suggest", "warm up", model=name, generation=gen)))
        warm_cli = [
            cli(["suggest", *flags, REQUESTS[i % len(REQUESTS)]], env) for i in range(args.runs)
        ]
        rows.append(("warm daemon via CLI (process wall)", f"{median(warm_cli):.0f} ms"))

        walls, daemon_ms, model_ms, reused, prompt = [], [], [], [], []
        for i in range(args.runs * 2):
            started = time.perf_counter()
            events = list(
                client.stream(
                    TaskRequest("suggest", REQUESTS[i % len(REQUESTS)], model=name, generation=gen)
                )
            )
            walls.append((time.perf_counter() - started) * 1000)
            done = events[-1]
            assert isinstance(done, Done)
            daemon_ms.append(float(done.extra.get("daemon_ms", 0.0)))
            model_ms.append(done.total_ms)
            reused.append(float(done.extra.get("prefix_reused_tokens", 0)))
            prompt.append(float(done.prompt_tokens))
        overhead = [w - d for w, d in zip(walls, daemon_ms, strict=True)]
        rows += [
            ("warm daemon via DaemonClient (wall)", f"{median(walls):.1f} ms"),
            ("  daemon time for the request (daemon_ms)", f"{median(daemon_ms):.1f} ms"),
            ("  model time (Done.total_ms)", f"{median(model_ms):.1f} ms"),
            ("  round-trip overhead (wall - daemon_ms)", f"{median(overhead):.2f} ms"),
            (
                "  overhead over model time (wall - total_ms)",
                f"{median([w - m for w, m in zip(walls, model_ms, strict=True)]):.1f} ms",
            ),
            (
                "  prompt tokens / reused from prefix cache",
                f"{median(prompt):.0f} / {median(reused):.0f}",
            ),
        ]
        lifecycle.stop(paths)

        # Prefix cache, in-process on the same model: cleared cache vs warm cache.
        pool = ModelPool(paths, settings)
        runner = pool.get(name)
        cache = getattr(runner, "prefix_cache", None)
        cold_prefill, warm_prefill, warm_reused = [], [], []
        for i in range(args.runs * 2):
            request = TaskRequest(
                "suggest", REQUESTS[i % len(REQUESTS)], model=name, generation=gen
            )
            if cache is not None:
                cache.clear()
            done = list(run_task(request, pool, settings, paths))[-1]
            assert isinstance(done, Done)
            cold_prefill.append(done.prefill_ms)
            done = list(
                run_task(
                    TaskRequest(
                        "suggest", REQUESTS[(i + 1) % len(REQUESTS)], model=name, generation=gen
                    ),
                    pool,
                    settings,
                    paths,
                )
            )[-1]
            assert isinstance(done, Done)
            warm_prefill.append(done.prefill_ms)
            warm_reused.append(float(done.extra.get("prefix_reused_tokens", 0)))
        pool.close()
        rows += [
            ("prefill, prefix cache cleared", f"{median(cold_prefill):.1f} ms"),
            ("prefill, prefix cache warm", f"{median(warm_prefill):.1f} ms"),
            ("  tokens reused per request", f"{median(warm_reused):.0f}"),
        ]
    finally:
        lifecycle.stop(paths)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    width = max(len(k) for k, _ in rows)
    print(f"model: {name}   runs: {args.runs}   max tokens: {args.max_tokens}")
    for key, value in rows:
        print(f"{key:<{width}}  {value:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
