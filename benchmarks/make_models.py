"""Build the full-size RANDOM-weight benchmark models, outside the repository.

Speed does not depend on weight values, so the bench runs real architectures (flan-t5-small,
flan-t5-base, gpt2, distilgpt2) with random weights drawn from a fixed seed. For each model
this writes, under ``--out`` (default ``/work/cache/bench-models`` or ``$SHELLFISH_BENCH_MODELS``):

    <name>/hf/          transformers checkpoint (config, safetensors, tokenizer)
    <name>/onnx/        optimum ONNX export (optimum layout) + tokenizer + genai_config.json (gpt2)
    <name>/onnx-int8/   the same graphs with weight-only int8 (MatMulNBits, block 128), as
                        `shellfish models quantize --int8` writes them (+ prefill graph)
    <name>/int4/        the same graphs with weight-only int4 (MatMulNBits)
    <name>/ct2-fp32/    CTranslate2 conversion, float32
    <name>/ct2-int8/    CTranslate2 conversion, int8

Real models (``smollm2-135m-instruct``, ``qwen2.5-coder-0.5b-instruct``) are built from their
GGUF with shellfish's own conversion worker: dequantised checkpoint, fp32 + int8 ONNX, CT2,
and the installed int4 model, so the precision table compares the same weights.

The optimum export needs transformers < 4.58 (optimum-onnx 0.1.0) while the project venv has a
newer transformers, so the export runs in a subprocess whose PYTHONPATH puts an "overlay"
directory (``pip install --no-deps --target DIR optimum-onnx==0.1.0 optimum==2.1.0
transformers==4.57.6 huggingface_hub==0.36.2 tokenizers==0.22.2``) in front; pass it with
``--overlay`` or ``$SHELLFISH_BENCH_OPTIMUM_OVERLAY``.

    .venv/bin/python benchmarks/make_models.py                 # all four
    .venv/bin/python benchmarks/make_models.py gpt2 --force    # one, rebuilt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(os.environ.get("SHELLFISH_BENCH_MODELS", "/work/cache/bench-models"))
DEFAULT_OVERLAY = os.environ.get(
    "SHELLFISH_BENCH_OPTIMUM_OVERLAY", "/work/cache/bench-peers/optimum-overlay"
)
SHARED_TOKENIZERS = Path(__file__).resolve().parents[2] / "shared" / "tokenizers"
SEED = 0

_T5_COMMON: dict[str, Any] = {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "d_kv": 64,
    "feed_forward_proj": "gated-gelu",
    "dense_act_fn": "gelu_new",
    "is_gated_act": True,
    "vocab_size": 32128,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "initializer_factor": 1.0,
    "tie_word_embeddings": False,
    "decoder_start_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 0,
    "is_encoder_decoder": True,
    "use_cache": True,
}
_GPT2_COMMON: dict[str, Any] = {
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "use_cache": True,
}

# The published configurations of the four models (hyper-parameters only, no weights).
CONFIGS: dict[str, dict[str, Any]] = {
    "flan-t5-small": {
        **_T5_COMMON,
        "d_model": 512,
        "d_ff": 1024,
        "num_heads": 6,
        "num_layers": 8,
        "num_decoder_layers": 8,
    },
    "flan-t5-base": {
        **_T5_COMMON,
        "d_model": 768,
        "d_ff": 2048,
        "num_heads": 12,
        "num_layers": 12,
        "num_decoder_layers": 12,
    },
    "gpt2": {**_GPT2_COMMON, "n_layer": 12},
    "distilgpt2": {**_GPT2_COMMON, "n_layer": 6},
}


def family(name: str) -> str:
    return "seq2seq" if CONFIGS[name]["model_type"] == "t5" else "causal"


def write_checkpoint(name: str, hf_dir: Path) -> None:
    """Random-init the architecture from its config (fixed seed) and save it with a tokenizer."""
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(**CONFIGS[name])
    torch.manual_seed(SEED)
    if family(name) == "seq2seq":
        model = transformers.T5ForConditionalGeneration(config)
    else:
        model = transformers.GPT2LMHeadModel(config)
    model.eval()
    hf_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(hf_dir)
    copy_tokenizer(name, hf_dir)


def copy_tokenizer(name: str, target: Path) -> None:
    kind = "t5" if family(name) == "seq2seq" else "gpt2"
    source = SHARED_TOKENIZERS / kind
    if not source.is_dir():
        raise SystemExit(f"tokenizer files missing: {source} (needed for {name})")
    for item in source.iterdir():
        shutil.copy2(item, target / item.name)
    special: dict[str, Any]
    if kind == "t5":
        special = {
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "model_max_length": 512,
            "tokenizer_class": "T5Tokenizer",
        }
    else:
        special = {
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "model_max_length": 1024,
            "tokenizer_class": "GPT2Tokenizer",
        }
    (target / "tokenizer_config.json").write_text(json.dumps(special, indent=2))


_EXPORT_SCRIPT = """
import sys
from optimum.exporters.onnx import main_export
main_export(sys.argv[1], output=sys.argv[2], task=sys.argv[3], opset=17, device="cpu",
            do_validation=False)
"""


def export_onnx(name: str, hf_dir: Path, onnx_dir: Path, overlay: str) -> None:
    task = (
        "text2text-generation-with-past"
        if family(name) == "seq2seq"
        else "text-generation-with-past"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = overlay + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run(
        [sys.executable, "-c", _EXPORT_SCRIPT, str(hf_dir), str(onnx_dir), task],
        check=True,
        env=env,
    )
    copy_tokenizer(name, onnx_dir)
    if family(name) == "causal":
        write_genai_config(name, onnx_dir)


def _onnx_decoder_file(onnx_dir: Path) -> str:
    for candidate in ("model.onnx", "decoder_with_past_model.onnx", "decoder_model_merged.onnx"):
        if (onnx_dir / candidate).is_file():
            return candidate
    raise SystemExit(f"no decoder graph found in {onnx_dir}")


def write_genai_config(name: str, onnx_dir: Path) -> None:
    """Describe the optimum GPT-2 graph to onnxruntime-genai (its `gpt2` model type)."""
    cfg = CONFIGS[name]
    config = {
        "model": {
            "bos_token_id": cfg["bos_token_id"],
            "context_length": cfg["n_positions"],
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": _onnx_decoder_file(onnx_dir),
                "head_size": cfg["n_embd"] // cfg["n_head"],
                "hidden_size": cfg["n_embd"],
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": cfg["n_head"],
                "num_hidden_layers": cfg["n_layer"],
                "num_key_value_heads": cfg["n_head"],
            },
            "eos_token_id": cfg["eos_token_id"],
            "pad_token_id": cfg["eos_token_id"],
            # genai's "gpt2" type expects the legacy combined past_%d tensors; the generic
            # decoder-only loop ("llama") feeds optimum's separate key/value inputs as they are.
            "type": "llama",
            "vocab_size": cfg["vocab_size"],
        },
        "search": {
            "do_sample": False,
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": cfg["n_positions"],
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }
    (onnx_dir / "genai_config.json").write_text(json.dumps(config, indent=2))


def quantize_int8(onnx_dir: Path, int8_dir: Path) -> None:
    """Int8 of every graph, what `shellfish models quantize --int8` makes
    (shellfish/store/quantize.py): weight-only MatMulNBits (block 128, int8 compute), a
    seq2seq encoder as int8 GEMMs, and beside a one-graph decoder its prefill graph."""
    from shellfish.store.prefill import prefill_source, write_prefill_graph

    _quantize(onnx_dir, int8_dir, bits=8)
    decoder = prefill_source(int8_dir)
    if decoder is not None and not (int8_dir / "encoder_model.onnx").is_file():
        write_prefill_graph(int8_dir, decoder)


def quantize_int4(onnx_dir: Path, int4_dir: Path) -> None:
    """Weight-only int4 (MatMulNBits, block 32, int8 compute) of every graph."""
    _quantize(onnx_dir, int4_dir, bits=4)


def _quantize(onnx_dir: Path, out_dir: Path, bits: int) -> None:
    from shellfish.store.attention import mark_genai_config
    from shellfish.store.quantize import int8_as_gemms, int8_gemm_file, quantize_file

    family = "seq2seq" if (onnx_dir / "encoder_model.onnx").is_file() else "causal"
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in onnx_dir.iterdir():
        if item.suffix == ".onnx" and bits == 8 and int8_as_gemms(item.name, family):
            int8_gemm_file(item, out_dir / item.name)  # as `shellfish models quantize --int8`
        elif item.suffix == ".onnx":
            quantize_file(item, out_dir / item.name, bits=bits)
        elif item.suffix not in {".onnx_data", ".data"} and item.is_file():
            shutil.copy2(item, out_dir / item.name)
    mark_genai_config(out_dir)  # GPT-2's attention shares its KV buffer now (store/attention.py)


def convert_ct2(hf_dir: Path, out_dir: Path, quantization: str) -> None:
    import ctranslate2

    converter = ctranslate2.converters.TransformersConverter(str(hf_dir))
    converter.convert(str(out_dir), quantization=quantization, force=True)


def build(name: str, out: Path, overlay: str, force: bool) -> None:
    root = out / name
    steps = [
        ("hf", lambda d: write_checkpoint(name, d)),
        ("onnx", lambda d: export_onnx(name, root / "hf", d, overlay)),
        ("onnx-int8", lambda d: quantize_int8(root / "onnx", d)),
        ("int4", lambda d: quantize_int4(root / "onnx", d)),
        ("ct2-fp32", lambda d: convert_ct2(root / "hf", d, "float32")),
        ("ct2-int8", lambda d: convert_ct2(root / "hf", d, "int8")),
    ]
    _run_steps(name, root, steps, force)
    (root / "bench-model.json").write_text(
        json.dumps(
            {"name": name, "family": family(name), "random_weights": True, "seed": SEED}, indent=2
        )
    )


# Real models: fp32 / int8 / int4 of the same weights for the precision comparison (item 3).
REAL_MODELS = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf",
}
GGUF_DIR = Path(os.environ.get("SHELLFISH_BENCH_GGUF", "/work/cache/bench-peers/gguf"))
INSTALLED = Path("/work/cache/models")


def build_real(name: str, out: Path, force: bool) -> None:
    """A real model from its GGUF: dequantised checkpoint (hf/), fp32 genai ONNX (onnx/),
    weight-only int8 of that (onnx-int8/), CT2 conversions, and the installed int4 model (int4/).

    The GGUF is already quantised, so "fp32" here means the dequantised GGUF weights: the
    comparison measures what ONNX int8/int4 cost on top of those, not against the original.
    """
    gguf = GGUF_DIR / REAL_MODELS[name]
    if not gguf.is_file():
        raise SystemExit(f"{gguf} is missing (put the GGUF there, or set SHELLFISH_BENCH_GGUF)")
    from shellfish.store.convert import WORKER as worker
    from shellfish.store.convert import worker_args

    root = out / name
    work = root / "work"

    def convert(target: Path, precision: str, scratch: Path) -> None:
        args = worker_args("gguf", gguf, target, scratch, precision=precision)
        subprocess.run([sys.executable, str(worker), *args], check=True)

    def fp32(target: Path) -> None:
        convert(target, "fp32", work)

    def hf(target: Path) -> None:
        shutil.copytree(work / "hf", target)
        # optimum's ORTModel needs the transformers config beside the genai-built graph.
        for extra in ("config.json", "generation_config.json"):
            if (target / extra).is_file() and (root / "onnx").is_dir():
                shutil.copy2(target / extra, root / "onnx" / extra)

    def int4(target: Path) -> None:
        if (INSTALLED / name / "model.onnx").is_file():
            target.symlink_to(INSTALLED / name, target_is_directory=True)
        else:
            convert(target, "int4", root / "work4")

    steps = [
        ("onnx", fp32),
        ("hf", hf),
        ("onnx-int8", lambda d: quantize_int8(root / "onnx", d)),
        ("int4", int4),
        ("ct2-fp32", lambda d: convert_ct2(root / "hf", d, "float32")),
        ("ct2-int8", lambda d: convert_ct2(root / "hf", d, "int8")),
    ]
    _run_steps(name, root, steps, force)
    (root / "bench-model.json").write_text(
        json.dumps(
            {"name": name, "family": "causal", "random_weights": False, "gguf": str(gguf)}, indent=2
        )
    )


def _run_steps(name: str, root: Path, steps: list[tuple[str, Any]], force: bool) -> None:
    for sub, step in steps:
        target = root / sub
        marker = (target / ".complete") if not target.is_symlink() else (root / f".{sub}.complete")
        if marker.is_file() and not force:
            print(f"{name}/{sub}: up to date", file=sys.stderr)
            continue
        if target.is_symlink():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        started = time.perf_counter()
        try:
            step(target)
        except Exception as exc:  # keep going: one failed conversion must not stop the rest
            print(f"{name}/{sub}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if target.is_symlink():
            marker = root / f".{sub}.complete"
        else:
            target.mkdir(parents=True, exist_ok=True)
        marker.write_text("ok\n")
        print(f"{name}/{sub}: built in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", default=list(CONFIGS), help=", ".join([*CONFIGS, *REAL_MODELS])
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--overlay",
        default=DEFAULT_OVERLAY,
        help="directory with optimum-onnx + transformers<4.58 for the export",
    )
    parser.add_argument("--force", action="store_true", help="rebuild what exists")
    args = parser.parse_args(argv)
    known = [*CONFIGS, *REAL_MODELS]
    unknown = [m for m in args.models if m not in known]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    for name in args.models:
        if name in REAL_MODELS:
            build_real(name, args.out, args.force)
        else:
            build(name, args.out, args.overlay, args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
