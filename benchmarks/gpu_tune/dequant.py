"""GGUF (Qwen2) -> model.safetensors (fp32, transformers' names) with gguf-py alone.

    python benchmarks/gpu_tune/dequant.py MODEL.gguf OUT/model.safetensors

For a machine whose transformers cannot read GGUF: the same weights as `tune/worker.py
hf-from-gguf` (checked here: all 291 tensors of the Qwen2.5-Coder 0.5B Q4_K_M GGUF equal, bit
for bit). Put config.json and the tokenizer files of an `hf-from-gguf` output beside it.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.torch import save_file

LAYER_PARTS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
TOP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(name: str) -> str:
    if name in TOP:
        return TOP[name]
    _blk, layer, part, kind = name.split(".")
    return f"model.layers.{layer}.{LAYER_PARTS[part]}.{kind}"


def main(src: str, dst: str) -> None:
    tensors = {}
    for t in GGUFReader(src).tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(x) for x in reversed(t.shape)]
        tensors[hf_name(t.name)] = torch.from_numpy(np.ascontiguousarray(values.reshape(shape)))
    save_file(tensors, dst, metadata={"format": "pt"})
    print(len(tensors), "tensors")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
