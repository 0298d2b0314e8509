"""The prefill graph of a merged decoder at full size: time to first token with and without it.

Not a test. The catalog's gpt2 / distilgpt2 are optimum *merged* decoders (one weight copy, an
If with a no-cache and a cache branch), which the bench does not have: its GPT-2 exports are
one graph. This builds a merged decoder of that shape from a one-graph export (both branches
run the export's own nodes - it takes an empty cache - and share its weights, as optimum's
merge does), imports it into a scratch store, runs `models quantize --int8` (which replaces
the If by its cache branch, with one shared KV buffer, `store/attention.py`, and writes the
prefill graph), and times a one-token generation after a `--context`-token
prompt with the prefill graph and without, each in a fresh process.

    python benchmarks/merged_prefill.py $SHELLFISH_BENCH_MODELS/distilgpt2/onnx
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_TIME = """
import json, statistics, sys, time
from pathlib import Path
import numpy as np
from shellfish.engine.base import GenerationConfig
from shellfish.engine.loader import load_model
path, context, flag, threads = sys.argv[1:5]
runner, _ = load_model(Path(path), threads=int(threads), prefill_graph=flag == "1")
rng = np.random.default_rng(0)
times = []
for _ in range(14):
    ids = [int(x) for x in rng.integers(100, 20000, int(context))]
    t0 = time.perf_counter()
    runner.generate_ids(ids, GenerationConfig(max_new_tokens=1, temperature=0.0),
                        use_prefix_cache=False)
    times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"ms": statistics.median(times[2:]),
                  "prefill_graph": runner.info.extra["prefill_graph"]}))
"""


def merge(export: Path, out: Path) -> None:
    """`out/decoder_model_merged.onnx` from the one-graph `export/model.onnx`, plus the rest."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(export / "model.onnx"))
    graph = model.graph
    outer = {i.name for i in graph.input} | {t.name for t in graph.initializer}

    def branch(prefix: str) -> onnx.GraphProto:
        body = copy.deepcopy(graph)
        renamed = {o: prefix + o for n in body.node for o in n.output if o}
        for node in body.node:
            node.name = prefix + node.name
            node.input[:] = [x if x in outer else renamed.get(x, x) for x in node.input]
            node.output[:] = [renamed.get(x, x) for x in node.output]
        outputs = []
        for value in body.output:
            copied = onnx.ValueInfoProto()
            copied.CopyFrom(value)
            copied.name = renamed.get(value.name, value.name)
            outputs.append(copied)
        return helper.make_graph(list(body.node), prefix.strip("/"), [], outputs)

    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    nodes = [
        helper.make_node("Squeeze", ["use_cache_branch"], ["use_cache_branch_scalar"]),
        helper.make_node(
            "If",
            ["use_cache_branch_scalar"],
            [o.name for o in graph.output],
            then_branch=branch("cached/"),
            else_branch=branch("plain/"),
        ),
    ]
    merged = helper.make_graph(
        nodes, "merged", [*graph.input, flag], list(graph.output), list(graph.initializer)
    )
    out.mkdir(parents=True)
    onnx.save(
        helper.make_model(merged, opset_imports=model.opset_import, ir_version=model.ir_version),
        str(out / "decoder_model_merged.onnx"),
    )
    for item in export.iterdir():  # config and tokenizer (not genai_config.json: one graph)
        if item.suffix in {".json", ".txt"} and item.name != "genai_config.json":
            shutil.copy2(item, out / item.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="a folder with optimum's one-graph model.onnx")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from shellfish.paths import get_paths
    from shellfish.store.install import import_path, quantize_int8
    from shellfish.store.store import Store

    with tempfile.TemporaryDirectory() as scratch:
        merged = Path(scratch) / "merged"
        merge(args.export, merged)
        environ = {"SHELLFISH_HOME": str(Path(scratch) / "home")}
        store = Store(get_paths(environ))
        import_path(store, merged, name="merged", environ=environ)
        model = quantize_int8(store, "merged")
        kv = model.manifest["quantization"].get("kv_buffer", "growing")
        print(f"{args.export}: merged decoder at int8, prefill graph of "
              f"{model.manifest.get('prefill_graph', 0)} matmuls, KV cache {kv}")  # fmt: skip
        for flag in ("0", "1"):
            done = subprocess.run(
                [sys.executable, "-c", _TIME, str(model.path), str(args.context), flag,
                 str(args.threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
            which = "with the prefill graph" if result["prefill_graph"] else "main graph only"
            print(f"  first token after {args.context} tokens, {which}: {result['ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
