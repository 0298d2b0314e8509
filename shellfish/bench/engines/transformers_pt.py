"""Peer: transformers PyTorch `generate` on the checkpoint (fp32, greedy, KV cache on)."""

from __future__ import annotations

from typing import Any

from shellfish.bench.engines.base import BenchEngine, require, require_module


class TransformersEngine(BenchEngine):
    name = "transformers"
    description = "transformers PyTorch generate()"

    def check(self) -> None:
        require_module("torch", "torch")
        require_module("transformers", "transformers")
        require(self.model.hf, "transformers checkpoint (hf/)")

    def load(self) -> None:
        import torch
        import transformers

        torch.set_num_threads(self.threads)
        cls: Any = (
            transformers.AutoModelForSeq2SeqLM
            if self.model.family == "seq2seq"
            else transformers.AutoModelForCausalLM
        )
        self._torch = torch
        self._model = cls.from_pretrained(self.model.hf, dtype=torch.float32).eval()

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return hf_generate(self._torch, self._model, self.model.family, ids, new_tokens)


def hf_generate(torch: Any, model: Any, family: str, ids: list[int], new_tokens: int) -> list[int]:
    """transformers-style greedy generate of exactly `new_tokens` (also used by optimum)."""
    x = torch.tensor([ids], dtype=torch.long)
    eos = model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = eos[0] if isinstance(eos, list) else (eos if eos is not None else 0)
    with torch.inference_mode():
        out = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=pad,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    start = 1 if family == "seq2seq" else len(ids)  # seq2seq output starts with decoder start
    return [int(t) for t in out[0, start:].tolist()]
