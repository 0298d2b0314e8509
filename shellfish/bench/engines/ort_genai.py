"""Peer: onnxruntime-genai's own C++ generation loop on the same ONNX file (decoder-only)."""

from __future__ import annotations

import json
from pathlib import Path

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable, require, require_module


class OrtGenaiEngine(BenchEngine):
    name = "ort-genai"
    description = "onnxruntime-genai Generator (C++ loop)"
    subdir: str | None = None  # None: the same ONNX dir the `shellfish` engine runs

    def _dir(self) -> str:
        if self.subdir is not None:
            path = require(getattr(self.model, self.subdir), f"{self.subdir} ONNX model")
        else:
            path = require(self.model.onnx or self.model.int4, "ONNX model")
        if not (Path(path) / "genai_config.json").is_file():
            raise EngineUnavailable(f"{path} has no genai_config.json")
        return path

    @property
    def precision(self) -> str:
        path = self._dir()
        if path == self.model.int4:
            return "int4"
        return "int8" if path == self.model.onnx_int8 else "fp32"

    def check(self) -> None:
        if self.model.family != "causal":
            raise EngineUnavailable("onnxruntime-genai is benched on decoder-only models only")
        require_module("onnxruntime_genai", "onnxruntime-genai")
        self._dir()

    def load(self) -> None:
        import onnxruntime_genai as og

        config = og.Config(self._dir())
        config.clear_providers()
        # Same thread count as every other engine (genai's default is its own choice).
        config.overlay(
            json.dumps(
                {
                    "model": {
                        "decoder": {
                            "session_options": {
                                "intra_op_num_threads": self.threads,
                                "inter_op_num_threads": 1,
                            }
                        }
                    }
                }
            )
        )
        self._og = og
        self._model = og.Model(config)

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        og = self._og
        params = og.GeneratorParams(self._model)
        total = len(ids) + new_tokens
        params.set_search_options(max_length=total, min_length=total, do_sample=False, batch_size=1)
        generator = og.Generator(self._model, params)
        generator.append_tokens([ids])
        out: list[int] = []
        while not generator.is_done() and len(out) < new_tokens:
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
        return out


class OrtGenaiInt8Engine(OrtGenaiEngine):
    name = "ort-genai-int8"
    description = "onnxruntime-genai on the weight-only int8 (MatMulNBits) ONNX"
    subdir = "onnx_int8"


class OrtGenaiInt4Engine(OrtGenaiEngine):
    name = "ort-genai-int4"
    description = "onnxruntime-genai on the int4 (MatMulNBits) ONNX"
    subdir = "int4"
