"""Conversion worker: GGUF file or transformers checkpoint -> onnxruntime-genai int4 ONNX.

This file runs as a *script* inside the isolated export environment (`paths.export_env`, or
`SHELLFISH_EXPORT_PYTHON`), which has torch / transformers / accelerate / gguf /
onnxruntime-genai but not necessarily shellfish. So it imports nothing from shellfish and
talks to its parent through its exit status, stderr lines and one JSON line on stdout:

    python convert_worker.py gguf   --input FILE.gguf --out DIR --work DIR [--precision int4]
                                    [--tie-embeddings] [--builder-option KEY=VALUE ...]
    python convert_worker.py hf     --input HF_DIR    --out DIR --work DIR [--precision int4]
                                    [--builder-option KEY=VALUE ...]
    python convert_worker.py arch   --input FILE.gguf

`--adapter DIR` (gguf and hf modes) merges a LoRA adapter (`adapter.safetensors` with
`NAME.lora_a` / `NAME.lora_b` pairs, `adapter.json` with its rank and alpha; what
`shellfish tune` writes) into the checkpoint's weights before the build.

`--builder-option` values go to the builder's `--extra_options` unchanged (e.g.
`prune_lm_head=true`). `--tie-embeddings` makes the checkpoint tie its token embedding and LM
head (one matrix, the LM head's values) before the build, for GGUFs of tied models that store
the two as separately quantised copies (see `tie_embeddings`).

With `prune_lm_head=true` the builder computes logits for the last position only (a prefill
skips most of the LM head); `short_pass_logits` then gives passes of a few tokens a row of
logits per position, which prompt-lookup decoding needs to check its guesses in one pass.

Progress lines on stderr look like `@@step <name>` so the parent can show a progress bar.
Exit status 3 with `@@unsupported <message>` on stderr means the model cannot be converted
(unknown architecture); any other non-zero status is a conversion failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Architectures both transformers' GGUF loader and the onnxruntime-genai builder handle.
# llama (SmolLM2) and qwen2 (Qwen2.5-Coder) are exercised by shellfish's tests; the rest are
# supported by both tools upstream but untested here.
SUPPORTED_ARCHS = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mistral": "MistralForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "nemotron": "NemotronForCausalLM",
}
HF_ARCHS = set(SUPPORTED_ARCHS.values())
EXIT_UNSUPPORTED = 3
# Largest relative difference (Frobenius) between a GGUF's token embedding and output matrix
# that still counts as "two quantisations of one tied matrix": Q5_0 vs Q8_0 copies of
# Qwen2.5-Coder-0.5B's tied embedding differ by 4.4%; genuinely untied matrices differ by ~100%+.
TIE_TOLERANCE = 0.15


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent_hook() -> Any:
    """A `preexec_fn` that makes the child get SIGKILL when this process dies (Linux).

    Without it a converter (or the builder it runs) keeps converting for minutes after
    shellfish is killed. libc is looked up here, in the parent: the hook then runs between
    fork and exec, where loading libraries is unsafe. It also exits at once if the parent
    already died before the request took effect. None elsewhere: the parent's own cleanup
    (kill on any exception) is all there is.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def step(name: str) -> None:
    print(f"@@step {name}", file=sys.stderr, flush=True)


def unsupported(message: str) -> int:
    print(f"@@unsupported {message}", file=sys.stderr, flush=True)
    return EXIT_UNSUPPORTED


def gguf_architecture(path: Path) -> str:
    """The `general.architecture` value of a GGUF file (raises ValueError if not GGUF)."""
    import gguf

    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (bad magic)")
    reader = gguf.GGUFReader(str(path))
    field = reader.get_field("general.architecture")
    if field is None:
        raise ValueError(f"{path} has no general.architecture key")
    return str(field.contents())


class NotTied(ValueError):
    """The GGUF's token embedding and LM head are different matrices."""


def tie_embeddings(model: Any) -> float:
    """Tie `model`'s token embedding to its LM head, keeping the LM head's values.

    Some GGUF files of tied models (Qwen2.5 0.5B) store the one matrix twice, quantised
    differently (token_embd Q5_0, output Q8_0), so transformers loads an untied model and the
    builder then keeps a full fp32 embedding next to an int4 LM head. Tying them again lets the
    builder share one int4 matrix for both (`shared_embeddings`). The LM head copy is kept
    because it is usually the more precisely quantised one (it matters most for quality).
    Returns the relative difference of the two copies; raises ValueError when they are not
    copies of one matrix (NotTied).
    """
    import torch

    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    if embed.shape != head.shape:
        raise NotTied(f"embedding {tuple(embed.shape)} and LM head {tuple(head.shape)} differ")
    if embed.data_ptr() == head.data_ptr():
        return 0.0
    with torch.no_grad():
        rel = float((embed - head).norm() / head.norm().clamp_min(1e-12))
        if rel > TIE_TOLERANCE:
            raise NotTied(
                f"the token embedding and LM head differ by {rel:.0%}: they are separate "
                "matrices, so they cannot be tied (remove tie_embeddings from the descriptor)"
            )
        embed.copy_(head)
    model.config.tie_word_embeddings = True
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    return rel


def merge_lora(model: Any, tensors: dict[str, Any], scale: float) -> int:
    """Add scale * B @ A to each adapted weight of `model`; returns how many were merged."""
    import torch

    modules = dict(model.named_modules())
    merged = 0
    with torch.no_grad():
        for key, a in tensors.items():
            if not key.endswith(".lora_a"):
                continue
            name = key[: -len(".lora_a")]
            b = tensors.get(f"{name}.lora_b")
            layer = modules.get(name)
            if b is None or layer is None or not isinstance(layer, torch.nn.Linear):
                raise ValueError(f"the adapter names {name}, which the base model does not have")
            delta = (b.float() @ a.float()) * scale
            if tuple(delta.shape) != tuple(layer.weight.shape):
                raise ValueError(f"adapter shape {tuple(delta.shape)} does not fit {name}")
            if not bool(torch.isfinite(delta).all()):
                raise ValueError(
                    f"the adapter's {name} holds values that are not finite numbers"
                    " (its training run diverged); it cannot be merged"
                )
            layer.weight += delta.to(layer.weight.dtype)
            merged += 1
    return merged


def merge_adapter(model: Any, adapter: Path) -> int:
    """Merge the LoRA adapter in directory `adapter` into `model` (see the module doc)."""
    from safetensors.torch import load_file

    meta = json.loads((adapter / "adapter.json").read_text(encoding="utf-8"))
    tensors = load_file(str(adapter / "adapter.safetensors"))
    n = merge_lora(model, tensors, float(meta["alpha"]) / int(meta["rank"]))
    if not n:
        raise ValueError(f"{adapter} holds no LoRA pair")
    print(f"merged the adapter into {n} layers", file=sys.stderr, flush=True)
    return n


def gguf_to_hf(
    gguf_path: Path, hf_dir: Path, *, tie: bool = False, adapter: Path | None = None
) -> None:
    """Dequantise a GGUF into a plain transformers checkpoint (fp32 safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    step("load-gguf")
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, torch_dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The loaded weights are already dequantised; dropping the quantizer lets save_pretrained
    # write an ordinary checkpoint instead of refusing / re-recording the GGUF quantisation.
    model.hf_quantizer = None  # type: ignore[assignment]
    if tie:
        rel = tie_embeddings(model)
        print(
            f"tied the token embedding to the LM head (copies differed by {rel:.2%})",
            file=sys.stderr,
            flush=True,
        )
    if adapter is not None:
        merge_adapter(model, adapter)
    step("save-hf")
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    # The builder refuses any checkpoint whose config still records a quantisation.
    config_path = hf_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    changed = config.pop("quantization_config", None) is not None
    if tie and config.get("tie_word_embeddings") is not True:
        config["tie_word_embeddings"] = True
        changed = True
    if changed:
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def merged_checkpoint(base: Path, adapter: Path, out: Path) -> int:
    """Write `base` (a transformers checkpoint) with `adapter` merged to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    step("merge-adapter")
    model = AutoModelForCausalLM.from_pretrained(str(base), torch_dtype=torch.float32)
    n = merge_adapter(model, adapter)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return n


def hf_architecture(hf_dir: Path) -> str:
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    return str(archs[0]) if archs else str(config.get("model_type", "?"))


def builder_command(
    hf_dir: Path, out: Path, cache: Path, precision: str, options: list[str]
) -> list[str]:
    """The onnxruntime-genai builder's command line; `options` are its KEY=VALUE extras."""
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(out),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(cache),
    ]
    if options:
        cmd += ["--extra_options", *options]
    return cmd


def build_onnx(
    hf_dir: Path, out: Path, work: Path, precision: str, options: list[str] | None = None
) -> None:
    """Run the onnxruntime-genai model builder (its `--help` crashes; the command works)."""
    step("build-onnx")
    cache = work / "builder-cache"
    cache.mkdir(parents=True, exist_ok=True)
    cmd = builder_command(hf_dir, out, cache, precision, list(options or []))
    print("@@builder " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent_hook(),  # the builder dies with this worker
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise RuntimeError(f"onnxruntime-genai builder failed (exit {proc.returncode}):\n{tail}")
    if not (out / "genai_config.json").exists():
        raise RuntimeError("onnxruntime-genai builder wrote no genai_config.json")


# Passes of at most this many tokens get logits at every position from a pruned LM head.
SHORT_PASS = 9
SHORT_PASS_KEY = "shellfish.logits_every_position_up_to"  # model metadata, read by the runner


def short_pass_logits(model_path: Path, short: int = SHORT_PASS) -> bool:
    """Make a pruned LM head give every position's logits in short passes after a prefix.

    The builder prunes with Gather(hidden, -1, axis=1) -> Unsqueeze(axes=[1]) before the LM
    head: a prefill computes one row of logits, not one per prompt token. Prompt-lookup
    decoding needs a row per guessed token, in passes of a few tokens after the cache. This
    replaces the pair with Slice(hidden, -keep, end, axis=1), keep = seq when the pass has
    <= `short` tokens and comes after cached positions (attention_mask longer than the
    pass), else 1, and records `short` in the model's metadata. A prefill and a one-token
    step still give one row, so onnxruntime-genai, which sizes its logits buffer for a pruned
    head, runs the graph as before. Only the graph file is rewritten, not its external
    weights. False when there is nothing to do (no pruned head, or done already).
    """
    if not model_path.is_file():
        return False
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    if any(p.key == SHORT_PASS_KEY for p in model.metadata_props):
        return False
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = attr.t
    producers = {o: n for n in graph.node for o in n.output}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    logits = next((o for o in graph.output if o.name == "logits"), None)
    head = producers.get(logits.name) if logits is not None else None
    unsqueeze = producers.get(head.input[0]) if head is not None else None
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze":
        return False
    gather = producers.get(unsqueeze.input[0])
    if (
        gather is None
        or gather.op_type != "Gather"
        or gather.input[1] not in consts
        or numpy_helper.to_array(consts[gather.input[1]]).tolist() != -1
        or next((a.i for a in gather.attribute if a.name == "axis"), 0) != 1
        or users.get(gather.output[0]) != 1
        or users.get(unsqueeze.output[0]) != 1
    ):
        return False
    mask = next((i.name for i in graph.input if i.name == "attention_mask"), None)
    if mask is None:
        return False
    hidden = gather.input[0]
    pre = "/lm_head/short_pass"

    def n(name: str) -> str:
        return f"{pre}/{name}"

    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([0], dtype=np.int64), n("zero")),
            numpy_helper.from_array(np.array([1], dtype=np.int64), n("one")),
            numpy_helper.from_array(np.array([short + 1], dtype=np.int64), n("limit")),
            numpy_helper.from_array(np.array([np.iinfo(np.int64).max], dtype=np.int64), n("end")),
        ]
    )
    node = helper.make_node
    nodes = [
        node("Shape", [hidden], [n("seq")], name=n("Shape"), start=1, end=2),
        node("Shape", [mask], [n("total")], name=n("ShapeMask"), start=1, end=2),
        node("Sub", [n("total"), n("seq")], [n("past")], name=n("Sub")),
        node("Greater", [n("past"), n("zero")], [n("after_past")], name=n("Greater")),
        node("Less", [n("seq"), n("limit")], [n("short")], name=n("Less")),
        node("And", [n("after_past"), n("short")], [n("checks")], name=n("And")),
        node("Where", [n("checks"), n("seq"), n("one")], [n("keep")], name=n("Where")),
        node("Neg", [n("keep")], [n("start")], name=n("Neg")),
        node(
            "Slice",
            [hidden, n("start"), n("end"), n("one")],
            [unsqueeze.output[0]],
            name=n("Slice"),
        ),
    ]
    at = list(graph.node).index(gather)
    kept = [x for x in graph.node if x is not gather and x is not unsqueeze]
    kept[at:at] = nodes
    del graph.node[:]
    graph.node.extend(kept)
    # The declared shapes stay (batch, 1, vocab): onnxruntime-genai sizes its logits buffer by
    # them, and its passes (prefill, one-token steps) still get one row. The metadata tells
    # shellfish's runner that short passes after the cache get a row per token.
    model.metadata_props.append(onnx.StringStringEntryProto(key=SHORT_PASS_KEY, value=str(short)))
    onnx.save(model, str(model_path))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convert_worker")
    parser.add_argument("mode", choices=["gguf", "hf", "arch"])
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--precision", default="int4", choices=["int4", "int8", "fp32", "fp16"])
    parser.add_argument("--builder-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tie-embeddings", action="store_true")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter directory to merge first")
    args = parser.parse_args(argv)
    for option in args.builder_option:
        if "=" not in option or not option.split("=", 1)[0]:
            parser.error(f"--builder-option must be KEY=VALUE, not {option!r}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Never reach for the network: everything we need is local.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    if args.mode in ("gguf", "arch"):
        step("read-gguf")
        try:
            arch = gguf_architecture(args.input)
        except Exception as exc:
            return unsupported(f"cannot read {args.input.name} as GGUF: {exc}")
        if arch not in SUPPORTED_ARCHS:
            return unsupported(
                f"GGUF architecture {arch!r} is not supported "
                f"(supported: {', '.join(sorted(SUPPORTED_ARCHS))})"
            )
        if args.mode == "arch":
            print(json.dumps({"architecture": arch}))
            return 0
    if args.out is None or args.work is None:
        parser.error("--out and --work are required for conversion")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.mode == "gguf":
        hf_dir = args.work / "hf"
        try:
            gguf_to_hf(args.input, hf_dir, tie=args.tie_embeddings, adapter=args.adapter)
        except NotTied as exc:
            return unsupported(str(exc))
        except ValueError as exc:  # an adapter that does not fit this model
            return unsupported(str(exc))
    else:
        hf_dir = args.input
        arch = hf_architecture(hf_dir)
        if arch not in HF_ARCHS:
            return unsupported(
                f"transformers architecture {arch!r} cannot be converted by the genai builder "
                f"(supported: {', '.join(sorted(HF_ARCHS))})"
            )
        if args.adapter is not None:
            hf_dir = args.work / "merged-hf"
            try:
                merged_checkpoint(args.input, args.adapter, hf_dir)
            except ValueError as exc:
                return unsupported(str(exc))
    build_onnx(hf_dir, args.out, args.work, args.precision, args.builder_option)
    short = SHORT_PASS if short_pass_logits(args.out / "model.onnx") else 0
    print(json.dumps({"architecture": arch, "out": str(args.out), "short_pass_logits": short}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
