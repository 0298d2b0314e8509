"""Peer: llama.cpp through llama-cpp-python, on the model's GGUF file (its own quantization).

PyPI ships llama-cpp-python as source only; `shellfish bench --build-peer llama.cpp` compiles
it for this CPU in the background (shellfish.bench.peer_build) into an overlay directory that
the worker puts first on PYTHONPATH (`SHELLFISH_BENCH_LLAMA_CPP` names another one).
"""

from __future__ import annotations

from pathlib import Path

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable, require_module


class LlamaCppEngine(BenchEngine):
    name = "llama.cpp"
    description = "llama.cpp (llama-cpp-python) on GGUF"
    overlay_env = "SHELLFISH_BENCH_LLAMA_CPP"

    @classmethod
    def default_overlay(cls, environ: dict[str, str]) -> str:
        from shellfish.bench.peer_build import overlay_dir
        from shellfish.paths import get_paths

        return str(overlay_dir(get_paths(environ), cls.name))

    @property
    def precision(self) -> str:
        # By convention the quantization is the file name's last dotted part (model.Q4_1.gguf).
        stem = Path(self.model.gguf or "").stem
        return stem.rsplit(".", 1)[1].lower() if "." in stem else "gguf"

    def check(self) -> None:
        if self.model.family != "causal":
            raise EngineUnavailable("llama.cpp is benched on decoder-only models only")
        try:
            require_module("llama_cpp", "llama-cpp-python")
        except EngineUnavailable as exc:
            from shellfish.bench.peer_build import build_status
            from shellfish.paths import get_paths

            state = build_status(self.name, get_paths()).describe()
            raise EngineUnavailable(f"llama_cpp is not installed; {state}") from exc
        if not self.model.gguf:
            raise EngineUnavailable(
                "the model has no GGUF file",
                hint="for a catalog model: `shellfish bench --gguf MODEL`",
            )

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
