"""The prefill graph against the main graph: time, first token, logits, on suggestion prompts.

Not a test. Builds N suggestion-shaped prompts (the suggest task's system turn, three NL2Bash
dev pairs as earlier turns, a fourth dev request; ../shared must be beside the checkout),
prefills each whole with `model.onnx` and with `model-prefill.onnx` (store/prefill.py), and
prints the median prefill time of each, how often the first token agrees, and the relative
error of the last position's logits (max |a - b| / max |a|).

    python benchmarks/prefill_agreement.py $SHELLFISH_HOME/data/models/qwen2.5-coder-0.5b-shellfish
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

DEV = Path(__file__).resolve().parents[1].parent / "shared/eval/nl2bash"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not (DEV / "dev.nl").is_file():
        print(f"needs the NL2Bash dev split in {DEV}", file=sys.stderr)
        return 2

    import numpy as np
    import onnxruntime as ort

    from shellfish.engine.templates import render_chat
    from shellfish.engine.tokenizer import load_tokenizer
    from shellfish.request import TaskRequest
    from shellfish.suggest.prompts import ANSWER_PREFIX, build_messages

    nl = (DEV / "dev.nl").read_text().splitlines()
    cm = (DEV / "dev.cm").read_text().splitlines()
    tokenizer = load_tokenizer(args.model)
    config = json.loads((args.model / "genai_config.json").read_text())["model"]["decoder"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3
    main_graph = ort.InferenceSession(str(args.model / "model.onnx"), options)
    prefill = ort.InferenceSession(str(args.model / "model-prefill.onnx"), options)

    times: dict[str, list[float]] = {"main": [], "prefill": []}
    same, errors, lengths = 0, [], []
    for i in range(0, 7 * args.n, 7):
        request = TaskRequest(task="suggest", text=nl[i], context={"os": "Linux"})
        examples = [(nl[j], cm[j]) for j in (i + 1, i + 2, i + 3)]
        text = render_chat("chatml", build_messages(request, examples), tokenizer=tokenizer)
        ids = tokenizer.encode(text + ANSWER_PREFIX)
        lengths.append(len(ids))
        feeds = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
        }
        for layer in range(config["num_hidden_layers"]):
            for kind in ("key", "value"):
                feeds[f"past_key_values.{layer}.{kind}"] = np.zeros(
                    (1, config["num_key_value_heads"], 0, config["head_size"]), np.float32
                )
        logits = {}
        for name, session in (("main", main_graph), ("prefill", prefill)):
            t0 = time.perf_counter()
            logits[name] = session.run(["logits"], feeds)[0][0, -1]
            times[name].append((time.perf_counter() - t0) * 1000)
        a, b = logits["main"], logits["prefill"]
        same += int(a.argmax() == b.argmax())
        errors.append(float(np.abs(a - b).max() / np.abs(a).max()))
    print(
        f"{args.model.name}: {args.n} prompts of {min(lengths)}-{max(lengths)} tokens, "
        f"{args.threads} threads, load {os.getloadavg()[0]:.2f}"
    )
    print(f"prefill ms (median): main graph {statistics.median(times['main']):.0f}, "
          f"prefill graph {statistics.median(times['prefill']):.0f}")  # fmt: skip
    print(f"same first token: {same} of {args.n}; relative logit error median "
          f"{statistics.median(errors):.3f}, max {max(errors):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
