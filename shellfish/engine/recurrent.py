"""Small character-level recurrent models (LSTM / GRU) described by a JSON descriptor.

A descriptor (`shellfish-recurrent.json`) names the ONNX graph and the vocabulary:

    {"format": "shellfish-recurrent", "onnx": "model.onnx", "type": "lstm", "sequence_length": 1,
     "hidden_size": 64, "num_layers": 2, "vocabulary": "abc...",
     "temperature": 0.8, "top_p": 0.95, "top_k": 0}

The graph takes the characters (int64 indices `[batch, seq]`, or one-hot floats
`[batch, seq, vocab]`) plus the state (`h`, and `c` for an LSTM, `[layers, batch, hidden]`) and
returns logits plus the new state; names are read from the session. The prompt primes the state,
then every sampled character is fed back with the state carried from the previous step.
Tokens are characters: each sampled character streams as one `Token`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.errors import ModelError, UsageError
from shellfish.events import Done, Event, Token

if TYPE_CHECKING:
    import numpy as np

DESCRIPTOR_NAME = "shellfish-recurrent.json"
FORMAT = "shellfish-recurrent"
_CELL = re.compile(r"(^|[_./])(c|cell|c0|c_0|cn|c_n)([_./0-9]|$)", re.IGNORECASE)
_HINT = "fix the descriptor or reinstall the model with `shellfish models pull`"


def read_descriptor(path: Path) -> tuple[Path, dict[str, Any]]:
    """(descriptor file, checked contents) for a descriptor file or the directory holding one."""
    path = Path(path)
    file = path / DESCRIPTOR_NAME if path.is_dir() else path
    if not file.is_file():
        raise ModelError(f"recurrent model descriptor is missing: {file}", hint=_HINT)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {file.name}: {exc}", hint=_HINT) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{file.name} is not a {FORMAT} descriptor (format field)", hint=_HINT)
    kind = data.get("type")
    if kind not in ("lstm", "gru"):
        raise ModelError(f"{file.name}: type must be 'lstm' or 'gru', not {kind!r}", hint=_HINT)
    vocab = data.get("vocabulary")
    if not isinstance(vocab, str) or not vocab:
        raise ModelError(f"{file.name}: vocabulary must be a non-empty string", hint=_HINT)
    if len(set(vocab)) != len(vocab):
        raise ModelError(f"{file.name}: vocabulary has repeated characters", hint=_HINT)
    if not isinstance(data.get("onnx", "model.onnx"), str):
        raise ModelError(f"{file.name}: onnx must be a file name", hint=_HINT)
    for key in ("sequence_length", "hidden_size", "num_layers"):
        value = data.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelError(f"{file.name}: {key} must be a positive integer", hint=_HINT)
    return file, data


class RecurrentRunner:
    """A loaded recurrent character model; implements `engine.base.Runner`."""

    def __init__(self, path: Path, info: ModelInfo, *, providers: list[str], threads: int) -> None:
        import numpy as np

        from shellfish.engine.providers import create_session

        self.descriptor_file, self.descriptor = read_descriptor(path)
        d = self.descriptor
        self.info = info
        self.kind: str = d["type"]
        self.vocabulary: str = d["vocabulary"]
        self.index = {ch: i for i, ch in enumerate(self.vocabulary)}
        self.chunk: int = int(d.get("sequence_length", 1))
        onnx_file = self.descriptor_file.parent / d.get("onnx", "model.onnx")
        self.session = create_session(onnx_file, providers=providers, threads=threads)
        self._wire(onnx_file.name)
        # A dry step checks the graph against the descriptor before anyone relies on it.
        logits, _ = self._run(np.zeros((1, 1), dtype=np.int64), self.zero_state())
        if logits.shape[-1] != len(self.vocabulary):
            raise ModelError(
                f"the descriptor's vocabulary has {len(self.vocabulary)} characters but "
                f"{onnx_file.name} produces {logits.shape[-1]} logits",
                hint=_HINT,
            )
        if info.defaults == GenerationConfig():
            info.defaults = GenerationConfig(
                temperature=float(d.get("temperature", 0.0)),
                top_p=float(d.get("top_p", 1.0)),
                top_k=int(d.get("top_k", 0)),
            )

    def _wire(self, filename: str) -> None:
        """Find the character input, state inputs and outputs by name, dtype and rank."""
        inputs = list(self.session.get_inputs())
        outputs = [o.name for o in self.session.get_outputs()]
        states = [
            i
            for i in inputs
            if len(i.shape) == 3
            and "float" in i.type
            and not (
                isinstance(i.shape[2], int)
                and i.shape[2] == len(self.vocabulary)
                and i.name.lower() in ("input", "x", "inputs", "one_hot")
            )
        ]
        chars = [i for i in inputs if i not in states]
        if len(chars) != 1:
            raise ModelError(
                f"{filename}: cannot tell the character input among {[i.name for i in inputs]}",
                hint="export the graph with one character input plus h (and c) state inputs",
            )
        self.input_name = chars[0].name
        self.one_hot = "float" in chars[0].type
        self.h_in = [i.name for i in states if not _CELL.search(i.name)]
        self.c_in = [i.name for i in states if _CELL.search(i.name)]
        need_c = 1 if self.kind == "lstm" else 0
        if len(self.h_in) != 1 or len(self.c_in) != need_c:
            raise ModelError(
                f"{filename}: a {self.kind} graph needs "
                f"{'h and c' if need_c else 'h'} state inputs, found {[i.name for i in states]}",
                hint="check the descriptor's type or re-export the model",
            )
        self.state_shape = [
            s if isinstance(s, int) else 1
            for s in next(i.shape for i in states if i.name == self.h_in[0])
        ]
        self.logits_name = "logits" if "logits" in outputs else outputs[0]
        rest = [o for o in outputs if o != self.logits_name]
        h_out = [o for o in rest if not _CELL.search(o)]
        c_out = [o for o in rest if _CELL.search(o)]
        if len(h_out) != 1 or len(c_out) != need_c:
            raise ModelError(
                f"{filename}: expected logits plus new state outputs, found {outputs}",
                hint="re-export the model with the new state as outputs",
            )
        self.state_out = {self.h_in[0]: h_out[0], **({self.c_in[0]: c_out[0]} if need_c else {})}

    def zero_state(self) -> dict[str, np.ndarray]:
        import numpy as np

        return {name: np.zeros(self.state_shape, dtype=np.float32) for name in self.state_out}

    def _run(
        self, chars: np.ndarray, state: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Feed character indices `[1, seq]`; return the last position's logits and new state."""
        import numpy as np

        value = np.eye(len(self.vocabulary), dtype=np.float32)[chars] if self.one_hot else chars
        names = [self.logits_name, *self.state_out.values()]
        results = self.session.run(names, {self.input_name: value, **state})
        logits = np.asarray(results[0], dtype=np.float32)
        logits = logits.reshape(-1, logits.shape[-1])[-1]
        return logits, dict(zip(self.state_out.keys(), results[1:], strict=True))

    def encode(self, text: str) -> list[int]:
        unknown = sorted({ch for ch in text if ch not in self.index})
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:10])
            raise UsageError(
                f"the prompt has characters that {self.info.name} does not know: {shown}",
                hint=f"use only the model's characters: {self.vocabulary[:60]!r}"
                + ("..." if len(self.vocabulary) > 60 else ""),
            )
        return [self.index[ch] for ch in text]

    def prime(self, ids: list[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run the prompt through the model in `sequence_length` chunks, carrying the state."""
        import numpy as np

        state = self.zero_state()
        logits = np.zeros(len(self.vocabulary), dtype=np.float32)
        for start in range(0, len(ids), self.chunk):
            chunk = np.array([ids[start : start + self.chunk]], dtype=np.int64)
            logits, state = self._run(chunk, state)
        return logits, state

    def generate_ids(
        self, prompt: str, config: GenerationConfig, cancel: threading.Event | None = None
    ) -> Iterator[int]:
        """Character indices, one per step, the state carried from step to step."""
        import numpy as np

        from shellfish.engine.sampling import sample_next

        if not prompt:
            raise UsageError(
                "the prompt is empty", hint="give the model a few characters to continue"
            )
        ids = self.encode(prompt)
        rng = np.random.default_rng(config.seed)
        logits, state = self.prime(ids)
        history = list(ids)
        for _ in range(config.max_new_tokens):
            if cancel is not None and cancel.is_set():
                return
            token = sample_next(
                logits,
                rng=rng,
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
                repetition_penalty=config.repetition_penalty,
                previous=history,
            )
            history.append(token)
            yield token
            logits, state = self._run(np.array([[token]], dtype=np.int64), state)

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        from shellfish.engine.stopping import StopStream

        config.validate()
        if config.num_beams > 1:
            raise UsageError(
                f"{self.info.name} is a recurrent model and has no beam search",
                hint="drop --beams, or use -n for several samples",
            )
        started = time.perf_counter()
        texts: list[str] = []
        reasons: list[str] = []
        first_token: float | None = None
        completion = 0
        for row in range(config.n):
            row_config = config.merged(seed=None if config.seed is None else config.seed + row)
            stop = StopStream(config.stop)
            count = 0
            for token in self.generate_ids(prompt, row_config, cancel):
                count += 1
                shown = stop.feed(self.vocabulary[token])
                if shown:
                    first_token = first_token or time.perf_counter()
                    yield Token(shown, index=row)
                if stop.stopped:
                    break
            tail = stop.flush()
            if tail:
                yield Token(tail, index=row)
            completion += count
            texts.append(stop.text)
            reasons.append("stop" if stop.stopped else "length")
        now = time.perf_counter()
        reason = "cancelled" if cancel is not None and cancel.is_set() else reasons[0]
        yield Done(
            texts=texts,
            model=self.info.name,
            prompt_tokens=len(prompt),
            completion_tokens=completion,
            first_token_ms=((first_token or now) - started) * 1000,
            total_ms=(now - started) * 1000,
            finish_reason=reason,
            extra={"finish_reasons": reasons},
        )

    def count_tokens(self, text: str) -> int:
        return len(text)

    def close(self) -> None:
        self.session = None


def load(path: Path, info: ModelInfo, *, providers: list[str], threads: int) -> RecurrentRunner:
    """Open a recurrent model from its descriptor file or the directory holding it."""
    return RecurrentRunner(Path(path), info, providers=providers, threads=threads)
