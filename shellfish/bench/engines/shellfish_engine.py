"""shellfish's own engine: `shellfish.engine.loader.load_model` and the runner's `generate_ids`.

Like every peer it generates exactly N tokens: the runner's end-of-sequence set is emptied
(the peers get `min_new_tokens`/`min_length`), and the prefix cache is off so every repeat
pays its full prefill, as the peers do (the prefix cache is measured by the cold/warm bench).
It loads a model's prefill graph when there is one (`store/prefill.py`: int8 GEMMs for prompts;
`models quantize --int8` writes one, and the default suggestion model has one), as the daemon
does: its load time and memory are in the load and RSS columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable, require


class ShellfishEngine(BenchEngine):
    name = "shellfish"
    description = "shellfish (Python loop on onnxruntime)"
    subdir: str | None = None  # None: the model's main ONNX (fp32 when there, else int4)

    def _dir(self) -> str:
        if self.subdir is not None:
            return require(getattr(self.model, self.subdir), f"{self.subdir} ONNX model")
        return require(self.model.onnx or self.model.int4, "ONNX model")

    @property
    def precision(self) -> str:
        path = self._dir()
        if path == self.model.int4:
            return "int4"
        return "int8" if path == self.model.onnx_int8 else "fp32"

    def check(self) -> None:
        self._dir()
        try:
            from shellfish.engine import loader  # noqa: F401
        except ImportError as exc:
            raise EngineUnavailable(f"shellfish's engine does not import: {exc}") from exc

    def load(self) -> None:
        from shellfish.engine.loader import load_model

        self._runner: Any
        self._runner, _warnings = load_model(
            Path(self._dir()), threads=self.threads, prefill_graph=True
        )
        # Equal work for every engine: never stop at end-of-sequence, and never pick it either
        # (the peers' min_new_tokens / min_length mask the EOS logits, so must we, or greedy
        # tokens differ whenever EOS is the top choice).
        eos = sorted(self._runner.eos_ids)
        self._runner.eos_ids = set()
        if eos:
            _mask_eos(self._runner, eos)

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        from shellfish.engine.base import GenerationConfig

        config = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)
        if self.model.family == "seq2seq":
            out = self._runner.generate_ids(list(ids), config)
            return [int(t) for t in out.sequences[0]]
        result = self._runner.generate_ids(list(ids), config, use_prefix_cache=False)
        return [int(t) for t in result.ids[0]]

    def close(self) -> None:
        self._runner.close()


def _mask_eos(runner: Any, eos: list[int]) -> None:
    """Wrap the runner's logits producers so EOS logits are -inf (bench-only instrumentation)."""
    import numpy as np

    # One EOS id (the usual case) is a plain index: a list index is numpy's fancy indexing,
    # several microseconds a step of work the peers do in C++ (min_length).
    index: Any = eos[0] if len(eos) == 1 else np.asarray(eos)

    def masked(inner: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            logits, rest = inner(*args, **kwargs)
            logits[..., index] = -np.inf
            return logits, rest

        return call

    if hasattr(runner, "decoder"):  # causal: Decoder.forward -> (logits, state)
        runner.decoder.forward = masked(runner.decoder.forward)
    elif hasattr(runner, "sessions"):  # seq2seq: run_first / run_next -> (logits, caches)
        runner.sessions.run_first = masked(runner.sessions.run_first)
        runner.sessions.run_next = masked(runner.sessions.run_next)


class ShellfishInt8Engine(ShellfishEngine):
    name = "shellfish-int8"
    description = "shellfish on the weight-only int8 (MatMulNBits) ONNX"
    subdir = "onnx_int8"


class ShellfishInt4Engine(ShellfishEngine):
    name = "shellfish-int4"
    description = "shellfish on the int4 (MatMulNBits) ONNX"
    subdir = "int4"
