"""Peer: CTranslate2 (int8 and fp32), converted from the transformers checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shellfish.bench.engines.base import BenchEngine, EngineUnavailable, require, require_module


class CT2Engine(BenchEngine):
    name = "ct2-int8"
    description = "CTranslate2 int8"
    compute_type = "int8"

    @property
    def precision(self) -> str:
        return self.compute_type

    def _dir(self) -> str:
        attr = "ct2_int8" if self.compute_type == "int8" else "ct2_fp32"
        return require(getattr(self.model, attr), f"CTranslate2 {self.compute_type} conversion")

    def check(self) -> None:
        require_module("ctranslate2", "ctranslate2")
        self._dir()

    def load(self) -> None:
        import ctranslate2

        path = Path(self._dir())
        vocab_file = next(
            (
                path / n
                for n in ("vocabulary.json", "shared_vocabulary.json", "target_vocabulary.json")
                if (path / n).is_file()
            ),
            None,
        )
        if vocab_file is None:
            raise EngineUnavailable(f"no vocabulary file in {path}")
        self._vocab: list[str] = json.loads(vocab_file.read_text())
        self._index = {tok: i for i, tok in enumerate(self._vocab)}
        cls: Any = (
            ctranslate2.Translator if self.model.family == "seq2seq" else ctranslate2.Generator
        )
        self._engine = cls(
            str(path),
            device="cpu",
            compute_type=self.compute_type,
            intra_threads=self.threads,
            inter_threads=1,
        )

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        tokens = [self._vocab[i] for i in ids]
        if self.model.family == "seq2seq":
            result = self._engine.translate_batch(
                [tokens],
                beam_size=1,
                max_decoding_length=new_tokens,
                min_decoding_length=new_tokens,
                return_scores=False,
            )
            return [self._index[t] for t in result[0].hypotheses[0]]
        result = self._engine.generate_batch(
            [tokens],
            beam_size=1,
            sampling_topk=1,
            max_length=new_tokens,
            min_length=new_tokens,
            include_prompt_in_result=False,
            return_scores=False,
        )
        return [int(i) for i in result[0].sequences_ids[0]]


class CT2Fp32Engine(CT2Engine):
    name = "ct2-fp32"
    description = "CTranslate2 float32"
    compute_type = "float32"

    @property
    def precision(self) -> str:
        return "fp32"
