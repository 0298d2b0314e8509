"""Peer: llama.cpp through llama-cpp-python, on the model's GGUF file (its own quantization)."""

from __future__ import annotations

from pathlib import Path

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable, require, require_module


class LlamaCppEngine(BenchEngine):
    name = "llama.cpp"
    description = "llama.cpp (llama-cpp-python) on GGUF"

    @property
    def precision(self) -> str:
        # By convention the quantization is the file name's last dotted part (model.Q4_1.gguf).
        stem = Path(self.model.gguf or "").stem
        return stem.rsplit(".", 1)[1].lower() if "." in stem else "gguf"

    def check(self) -> None:
        if self.model.family != "causal":
            raise EngineUnavailable("llama.cpp is benched on decoder-only models only")
        require_module("llama_cpp", "llama-cpp-python")
        require(self.model.gguf, "GGUF file")

    def load(self) -> None:
        from llama_cpp import Llama

        window = self.model.max_positions or 2048
        self._llm = Llama(
            model_path=self.model.gguf,
            n_ctx=min(window, 4096),
            n_batch=512,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
            seed=0,
        )

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        # reset() first: generate() would otherwise reuse the KV cache of a matching prefix
        # and skip the prefill this bench is timing.
        self._llm.reset()
        out: list[int] = []
        for token in self._llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, reset=True):
            out.append(int(token))
            if len(out) >= new_tokens:
                break
        return out

    def close(self) -> None:
        self._llm.close()
