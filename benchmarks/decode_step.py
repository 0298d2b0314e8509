"""Per-token cost of shellfish's decode loop against onnxruntime-genai on the same model.

Not a test. Greedy-generates N tokens from a fixed 16-token prompt with both, interleaved, and
prints the median CPU time and wall time per token with the load average. CPU time (this
process, all threads) is the steadier figure on a shared machine: waiting for a core is not
counted. Small models show the per-step Python work best (tests/fixtures' tiny int4 qwen, or
SmolLM2); the model directory must be an onnxruntime-genai layout (genai_config.json).

    python benchmarks/decode_step.py tests/fixtures/generated/causal-*/qwen-genai-int4 \\
        --tokens 200 --runs 9 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from shellfish.engine import causal
    from shellfish.engine.base import GenerationConfig, ModelInfo

    info = ModelInfo(args.model.name, "causal", "", str(args.model), 0)
    runner = causal.load(args.model, info, providers=["CPUExecutionProvider"], threads=args.threads)
    prompt = list(range(10, 26))
    config = GenerationConfig(max_new_tokens=args.tokens)

    def shellfish() -> int:
        runner.prefix_cache.clear()
        out = runner.generate_ids(prompt, config, use_prefix_cache=False)
        return len(out.ids[0])

    engines: dict[str, Callable[[], int]] = {"shellfish": shellfish}
    try:
        import onnxruntime_genai as og

        og_config = og.Config(str(args.model))
        og_config.clear_providers()
        threads = {"intra_op_num_threads": args.threads, "inter_op_num_threads": 1}
        og_config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
        model = og.Model(og_config)

        def genai() -> int:
            params = og.GeneratorParams(model)
            total = len(prompt) + args.tokens
            params.set_search_options(max_length=total, min_length=total, do_sample=False)
            generator = og.Generator(model, params)
            generator.append_tokens(prompt)
            n = 0
            while not generator.is_done():
                generator.generate_next_token()
                n += 1
            return n

        engines["onnxruntime-genai"] = genai
    except ImportError:
        print("onnxruntime-genai is not installed: shellfish only")
    for run in engines.values():
        run()  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    wall: dict[str, list[float]] = {name: [] for name in engines}
    loads = [os.getloadavg()[0]]
    for _ in range(args.runs):
        for name, run in engines.items():
            c0, w0 = time.process_time(), time.perf_counter()
            n = run()
            cpu[name].append((time.process_time() - c0) * 1000 / n)
            wall[name].append((time.perf_counter() - w0) * 1000 / n)
        loads.append(os.getloadavg()[0])
    print(f"{args.model.name}: {args.tokens} greedy tokens after 16, {args.threads} thread(s), "
          f"median of {args.runs}; load avg {min(loads):.2f}-{max(loads):.2f} on "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'engine':20} {'CPU ms/token':>13} {'wall ms/token':>14}")
    for name in engines:
        print(f"{name:20} {statistics.median(cpu[name]):13.3f} "
              f"{statistics.median(wall[name]):14.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
