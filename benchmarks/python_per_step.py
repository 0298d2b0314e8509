"""How much Python a decode step costs: shellfish's loop against a bare onnxruntime loop.

    python benchmarks/python_per_step.py MODEL_DIR [--tokens 64] [--runs 20] [--threads 2]

Both generate `--tokens` greedy tokens after the same 16-token prompt, in this one process, on
the same graph (`model.onnx` of a causal one-graph decoder: a genai folder or optimum's
export). Each wraps the session's `run_with_iobinding` with a timer; the time outside it,
divided by the tokens, is the step's Python. The bare loop is the least a Python caller can
do: it binds the new token and the mask each step, and either keeps one capacity-sized cache
bound as input and output (genai's shared buffer) or binds the growing cache's outputs back as
the next inputs. Prints the median over `--runs` generations after 3 warm-ups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = list(range(10, 26))


class Timed:
    """A session whose `run_with_iobinding` adds its wall time to `spent`."""

    def __init__(self, session: Any) -> None:
        self.spent = 0.0
        inner = session.run_with_iobinding

        def run(binding: Any, *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(binding, *args)
            finally:
                self.spent += time.perf_counter() - started

        session.run_with_iobinding = run


def measure(generate: Any, timers: list[Timed], tokens: int, runs: int) -> tuple[float, float]:
    """(ms per token of the whole generation, prompt included; Python us per token), medians
    over `runs` generations."""
    for _ in range(3):
        generate()
    steps, python = [], []
    for _ in range(runs):
        for t in timers:
            t.spent = 0.0
        started = time.perf_counter()
        generate()
        wall = time.perf_counter() - started
        inside = sum(t.spent for t in timers)
        steps.append(wall / tokens * 1e3)
        python.append((wall - inside) / tokens * 1e6)
    return statistics.median(steps), statistics.median(python)


def shellfish_loop(model_dir: Path, tokens: int, threads: int) -> tuple[Any, list[Timed]]:
    from shellfish.engine.base import GenerationConfig
    from shellfish.engine.loader import load_model

    runner: Any  # a causal runner: its decoder and generate_ids
    runner, _warnings = load_model(model_dir, threads=threads)
    runner.eos_ids = set()  # equal work: never stop early
    decoder = runner.decoder
    timers = [Timed(s) for s in (decoder.main, decoder.first, decoder.prefill) if s is not None]
    config = GenerationConfig(max_new_tokens=tokens, temperature=0.0)

    def generate() -> None:
        runner.generate_ids(PROMPT, config, use_prefix_cache=False)

    return generate, timers


def bare_loop(model_dir: Path, tokens: int, threads: int) -> tuple[Any, list[Timed], str]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    inputs = [i.name for i in session.get_inputs()]
    past = [i for i in session.get_inputs() if i.name.startswith("past")]
    outputs = [o.name for o in session.get_outputs()]
    logits_name, presents = outputs[0], outputs[1:]
    genai = model_dir / "genai_config.json"
    config = json.loads(genai.read_text()) if genai.is_file() else {}
    shared = bool(config.get("search", {}).get("past_present_share_buffer", False))
    if config:
        decoder = config["model"]["decoder"]
        heads, head_dim = decoder["num_key_value_heads"], decoder["head_size"]
    else:
        heads, head_dim = past[0].shape[1], past[0].shape[3]
    dtype = np.float16 if "float16" in past[0].type else np.float32
    vocab = session.get_outputs()[0].shape[-1]
    binding = session.io_binding()
    logits = np.empty((1, 1, vocab), np.float32)
    logits_value = ort.OrtValue.ortvalue_from_numpy(logits)
    capacity = len(PROMPT) + tokens
    ones = np.ones((1, capacity), np.int64)
    positions = np.arange(capacity, dtype=np.int64)[None, :]
    timer = Timed(session)

    def feed(ids: Any, total: int) -> None:
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", ones[:, :total])
        if "position_ids" in inputs:
            binding.bind_cpu_input("position_ids", positions[:, total - ids.shape[1] : total])

    def generate() -> None:
        total = len(PROMPT)
        ids = np.array([PROMPT], np.int64)
        if shared:
            cache = [
                ort.OrtValue.ortvalue_from_numpy(np.zeros((1, heads, capacity, head_dim), dtype))
                for _ in past
            ]
            for p, value in zip(past, cache, strict=True):
                binding.bind_ortvalue_input(p.name, value)
            for name, value in zip(presents, cache, strict=True):
                binding.bind_ortvalue_output(name, value)
        else:
            empty = np.zeros((1, heads, 0, head_dim), dtype)
            cache = [ort.OrtValue.ortvalue_from_numpy(empty) for _ in past]
        for step in range(tokens):
            feed(ids, total)
            # logits first: `get_outputs` answers in the order the outputs were bound
            if step == 0:
                binding.bind_output(logits_name, "cpu")
            else:
                binding.bind_ortvalue_output(logits_name, logits_value)
            if not shared:
                for p, value in zip(past, cache, strict=True):
                    binding.bind_ortvalue_input(p.name, value)
                for name in presents:
                    binding.bind_output(name, "cpu")
            session.run_with_iobinding(binding)
            if step == 0 or not shared:
                values = binding.get_outputs()
                last = values[0].numpy()[0, -1] if step == 0 else logits[0, -1]
                if not shared:
                    cache = values[1:]
            else:
                last = logits[0, -1]
            ids = np.array([[int(last.argmax())]], np.int64)
            total += 1

    return generate, [timer], "shared buffer" if shared else "growing cache"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not (args.model_dir / "model.onnx").is_file():
        print(f"{args.model_dir} has no model.onnx (a one-graph causal decoder)", file=sys.stderr)
        return 2
    generate, timers, kind = bare_loop(args.model_dir, args.tokens, args.threads)
    bare = measure(generate, timers, args.tokens, args.runs)
    generate, timers = shellfish_loop(args.model_dir, args.tokens, args.threads)
    ours = measure(generate, timers, args.tokens, args.runs)
    print(f"{args.model_dir} ({kind}), {args.tokens} tokens, median of {args.runs}:")
    print(f"  bare onnxruntime loop  {bare[0]:6.3f} ms/token   Python {bare[1]:6.1f} us/token")
    print(f"  shellfish              {ours[0]:6.3f} ms/token   Python {ours[1]:6.1f} us/token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
