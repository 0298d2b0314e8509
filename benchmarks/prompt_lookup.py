"""Prompt-lookup decoding on the suggestion path: the same requests with and without it.

Not a test. Loads one model in this process (as the daemon holds it) and runs each request
through `run_suggest` twice, once with `prompt_lookup=0` and once with `--guesses`, in
alternating order (the second run of a request finds its prompt in the prefix cache, so the
order is swapped every request). Prints the decode time of both (the pipeline's `stages_ms`),
their ratio, the whole suggestion's median, how often the first command is the same, and the
load average, since the machine may be shared.

    python benchmarks/prompt_lookup.py --model qwen2.5-coder-0.5b-shellfish -n 30 --start 200 \\
        --guesses 4 [--min-ngram 2] [--output runs.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from shellfish.cli.evaluate import DEFAULT_NL, _runner
from shellfish.engine import causal
from shellfish.environment import Environment
from shellfish.eval.run import load_pairs
from shellfish.events import Done
from shellfish.request import TaskRequest
from shellfish.suggest import run_suggest


def suggest(env: Environment, runner: Any, text: str, guesses: int) -> tuple[float, Done]:
    request = TaskRequest(
        task="suggest",
        text=text,
        context={"shell": "bash", "cwd": "/home/user/project"},
        generation={"prompt_lookup": guesses},
    )
    started = time.perf_counter()
    done = None
    for event in run_suggest(request, runner, settings=env.settings, paths=env.paths):
        if isinstance(event, Done):
            done = event
    assert done is not None
    return time.perf_counter() - started, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model name or directory (default: the suggest model)")
    parser.add_argument("-n", type=int, default=30, help="requests")
    parser.add_argument("--start", type=int, default=200, help="first request of the dev split")
    parser.add_argument("--guesses", type=int, default=4, help="prompt_lookup value to compare")
    parser.add_argument("--min-ngram", type=int, default=2, help="shortest match that guesses")
    parser.add_argument("--output", type=Path, help="every request's two runs as JSON lines")
    args = parser.parse_args()

    default_guess = causal.lookup_guess

    def guess(sequence: Any, k: int, max_ngram: int = 3, min_ngram: int = 2) -> list[int]:
        return default_guess(sequence, k, max_ngram, args.min_ngram)

    causal.lookup_guess = guess  # type: ignore[assignment]
    env = Environment()
    runner, name = _runner(args.model, env)
    if not getattr(getattr(runner, "decoder", None), "most_guesses", 0):
        print(f"{name}: this graph cannot check guesses (a pruned LM head without shellfish's")
        print("short-pass change, or no KV cache): re-convert it with this shellfish")
        return 1
    nl = Path(DEFAULT_NL)
    pairs = load_pairs(nl, nl.with_suffix(".cm"), 0)[args.start : args.start + args.n]
    load_before = os.getloadavg()[0]
    rows = []
    out = args.output.open("w", encoding="utf-8") if args.output else None
    for i, (text, _reference) in enumerate(pairs):
        runs: dict[int, tuple[float, Done]] = {}
        for guesses in (0, args.guesses) if i % 2 == 0 else (args.guesses, 0):
            runs[guesses] = suggest(env, runner, text, guesses)
        (wall_off, off), (wall_on, on) = runs[0], runs[args.guesses]
        row = {
            "request": text,
            "off": off.texts[:1],
            "on": on.texts[:1],
            "wall_off_s": round(wall_off, 4),
            "wall_on_s": round(wall_on, 4),
            "decode_off_ms": off.extra.get("stages_ms", {}).get("decode", 0.0),
            "decode_on_ms": on.extra.get("stages_ms", {}).get("decode", 0.0),
        }
        rows.append(row)
        if out is not None:
            out.write(json.dumps(row) + "\n")
        print(f"\r{i + 1}/{len(pairs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if out is not None:
        out.close()
    off_ms = sum(r["decode_off_ms"] for r in rows)
    on_ms = sum(r["decode_on_ms"] for r in rows)
    same = sum(r["off"] == r["on"] for r in rows)
    print(f"model {name}, {len(rows)} requests, prompt_lookup {args.guesses}, ", end="")
    print(f"min n-gram {args.min_ngram}")
    print(f"decode, all requests: {off_ms:.0f} ms without, {on_ms:.0f} ms with", end="")
    print(f" = {off_ms / max(on_ms, 1e-9):.2f}x")
    med_off = statistics.median(r["wall_off_s"] for r in rows)
    med_on = statistics.median(r["wall_on_s"] for r in rows)
    print(f"suggestion median: {med_off:.3f} s without, {med_on:.3f} s with")
    print(f"same first command: {same} of {len(rows)}")
    print(f"load average: {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
