"""Where one forward pass of a genai-layout decoder spends its time, by operator type.

Not a test. Runs the graph with onnxruntime's profiler on random token ids (speed does not
depend on their values) after a cache of `--past` positions, and prints the mean kernel
time per operator type over `--runs` passes, plus the LM head's share (nodes whose name
holds `lm_head`). What docs/quality.md and store/prefill.py quote came from:

    # a decode step at a 235-token context, the default model
    python benchmarks/op_profile.py $SHELLFISH_HOME/data/models/qwen2.5-coder-0.5b-shellfish \\
        --tokens 1 --past 235
    # a 232-token prefill, main graph against the prefill graph
    python benchmarks/op_profile.py DIR --tokens 232
    python benchmarks/op_profile.py DIR --graph model-prefill.onnx --tokens 232
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a genai-layout model directory")
    parser.add_argument("--graph", default="model.onnx")
    parser.add_argument("--tokens", type=int, default=1, help="new tokens in the pass")
    parser.add_argument("--past", type=int, default=0, help="cached positions before them")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort

    config = json.loads((args.model / "genai_config.json").read_text())["model"]["decoder"]
    layers, kv_heads, head = (
        config["num_hidden_layers"],
        config["num_key_value_heads"],
        config["head_size"],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.enable_profiling = True
    options.log_severity_level = 3
    session = ort.InferenceSession(str(args.model / args.graph), options)
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(100, 20000, (1, args.tokens), dtype=np.int64),
        "attention_mask": np.ones((1, args.past + args.tokens), dtype=np.int64),
    }
    if any(i.name == "position_ids" for i in session.get_inputs()):  # GPT-2 graphs take it
        feeds["position_ids"] = np.arange(args.past, args.past + args.tokens, dtype=np.int64)[None]
    for i in range(layers):
        for kind in ("key", "value"):
            feeds[f"past_key_values.{i}.{kind}"] = rng.random(
                (1, kv_heads, args.past, head), dtype=np.float32
            )
    session.run(None, feeds)  # warm-up, counted out below
    for _ in range(args.runs):
        session.run(None, feeds)
    trace = session.end_profiling()
    events = json.loads(Path(trace).read_text())
    os.remove(trace)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    cutoff = runs[0]["ts"] + runs[0]["dur"] if runs else 0  # skip the warm-up's kernels
    by_op: collections.Counter[str] = collections.Counter()
    lm_head = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < cutoff:
            continue
        by_op[e["args"]["op_name"]] += e["dur"]
        if "lm_head" in e["name"]:
            lm_head += e["dur"]
    total = sum(by_op.values())
    print(
        f"{args.model.name}/{args.graph}: {args.tokens} new tokens after {args.past}, "
        f"{args.threads} threads, mean of {args.runs} passes, load {os.getloadavg()[0]:.2f}"
    )
    for op, us in by_op.most_common(10):
        print(f"{op:34} {us / args.runs / 1000:8.3f} ms {100 * us / total:5.1f} %")
    print(f"{'(LM head nodes)':34} {lm_head / args.runs / 1000:8.3f} ms")
    print(f"{'all kernels':34} {total / args.runs / 1000:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
