"""Peer: optimum's ONNX Runtime models (ORTModelFor*) + transformers `generate`.

optimum-onnx pins transformers < 4.58, older than the project's; the worker runs it with an
overlay directory first on PYTHONPATH (see benchmarks/make_models.py for the one-line install).
"""

from __future__ import annotations

from typing import Any

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable, require, require_module
from shellfish.bench.engines.transformers_pt import hf_generate

OVERLAY_ENV = "SHELLFISH_BENCH_OPTIMUM_OVERLAY"


class OptimumEngine(BenchEngine):
    name = "optimum"
    description = "optimum ORTModel + transformers generate()"
    overlay_env = OVERLAY_ENV
    subdir = "onnx"

    @classmethod
    def default_overlay(cls, environ: dict[str, str]) -> str:
        return "/work/cache/bench-peers/optimum-overlay"

    @property
    def precision(self) -> str:
        return "int8" if self.subdir == "onnx_int8" else "fp32"

    def _dir(self) -> str:
        return require(getattr(self.model, self.subdir), f"{self.subdir} ONNX export")

    def check(self) -> None:
        require_module("torch", "torch")
        require_module("optimum", "optimum-onnx (in an overlay dir, see make_models.py)")
        self._dir()
        try:
            import optimum.onnxruntime  # noqa: F401
        except Exception as exc:  # version conflicts surface here as ImportError/RuntimeError
            raise EngineUnavailable(
                f"optimum.onnxruntime does not import: {type(exc).__name__}: {str(exc)[:200]}",
                hint=f"install optimum-onnx into an overlay and set {OVERLAY_ENV}",
            ) from exc

    def load(self) -> None:
        import onnxruntime as ort
        import torch
        from optimum import onnxruntime as opt

        torch.set_num_threads(self.threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        cls: Any = (
            opt.ORTModelForSeq2SeqLM if self.model.family == "seq2seq" else opt.ORTModelForCausalLM
        )
        self._torch = torch
        self._model = cls.from_pretrained(
            self._dir(), session_options=options, provider="CPUExecutionProvider", use_cache=True
        )

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        return hf_generate(self._torch, self._model, self.model.family, ids, new_tokens)


class OptimumInt8Engine(OptimumEngine):
    name = "optimum-int8"
    description = "optimum ORTModel on the weight-only int8 (MatMulNBits) ONNX"
    subdir = "onnx_int8"
