"""Encoder-decoder (T5 / flan-T5) runner over the optimum ONNX layout.

Files: `encoder_model.onnx` plus either `decoder_model.onnx` + `decoder_with_past_model.onnx`
("optimum-split") or `decoder_model_merged.onnx` with a `use_cache_branch` input
("optimum-merged"). All wiring - input/output names, cache names, layer count, heads, head size,
dtypes - is read from the sessions (and config.json where a shape is symbolic).

Generation: the encoder runs once; the first decoder step computes the cross-attention caches
(`present.*.encoder.*`), which are reused for every later step; the self-attention caches grow
by one position per step. Samples (`n`) and beams (`num_beams`) are rows of one batch.

Streaming: greedy/sampling yield `Token` events for every sample, tagged with its `index`; beam
search yields no `Token` events (the best beam is only known at the end), just the final `Done`
with one text per beam, best first. `Done.completion_tokens` counts the generated tokens of all
samples (of the best beam for beam search).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.errors import ModelError, PromptTooLong, UsageError
from shellfish.events import Done, Event, Token

if TYPE_CHECKING:
    import numpy as np

    from shellfish.engine.tokenizer import Tokenizer

_PAST = re.compile(r"^past_key_values\.(\d+)\.(decoder|encoder)\.(key|value)$")
_PRESENT = re.compile(r"^present\.(\d+)\.(decoder|encoder)\.(key|value)$")
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}
_HINT = "reinstall the model with `shellfish models pull`"
DEFAULT_CONTEXT = 512


@dataclass
class GenerationOutput:
    """What `generate_ids` returns: token ids per sample/beam (eos included when produced)."""

    sequences: list[list[int]]
    finish_reasons: list[str]
    scores: list[float] = field(default_factory=list)  # beam scores (length-penalised)
    step_logits: list[Any] = field(default_factory=list)  # row 0's logits per step, if asked


class _Wiring:
    """Names, shapes and dtypes of one decoder session, read from the graph."""

    def __init__(self, session: Any, config: dict[str, Any], filename: str) -> None:
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.outputs = [o.name for o in session.get_outputs()]
        self.past: dict[tuple[int, str, str], str] = {}
        for name in self.inputs:
            m = _PAST.match(name)
            if m:
                self.past[(int(m[1]), m[2], m[3])] = name
        self.present: dict[tuple[int, str, str], str] = {}
        for name in self.outputs:
            m = _PRESENT.match(name)
            if m:
                self.present[(int(m[1]), m[2], m[3])] = name
        self.ids_name = _pick(self.inputs, ("input_ids", "decoder_input_ids"), filename)
        self.logits_name = "logits" if "logits" in self.outputs else self.outputs[0]
        self.use_cache_branch = "use_cache_branch" in self.inputs
        keys = set(self.present) | set(self.past)
        self.layers = 1 + max((k[0] for k in keys), default=-1)
        shape: list[Any] = []
        dtype = "float32"
        for name in list(self.past.values()):
            shape = list(self.inputs[name].shape)
            dtype = _DTYPES.get(self.inputs[name].type, "float32")
            break
        if not shape:
            for out in session.get_outputs():
                if _PRESENT.match(out.name):
                    shape = list(out.shape)
                    dtype = _DTYPES.get(out.type, "float32")
                    break
        self.dtype = dtype
        heads = shape[1] if len(shape) == 4 else None
        head_dim = shape[3] if len(shape) == 4 else None
        self.heads = heads if isinstance(heads, int) else int(config.get("num_heads", 0))
        self.head_dim = head_dim if isinstance(head_dim, int) else int(config.get("d_kv", 0))


def _pick(names: dict[str, Any], options: tuple[str, ...], filename: str) -> str:
    for option in options:
        if option in names:
            return option
    raise ModelError(
        f"{filename} has no {' or '.join(options)} input (it has {', '.join(names)})",
        hint="this does not look like an optimum seq2seq export; re-export the model",
    )


class _Sessions:
    """The encoder/decoder sessions of one model and a uniform way to run them."""

    def __init__(self, path: Path, providers: list[str], threads: int) -> None:
        from shellfish.engine.providers import create_session

        config_file = path / "config.json"
        try:
            self.config: dict[str, Any] = (
                json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {config_file}: {exc}", hint=_HINT) from exc

        def session(name: str) -> Any:
            # The encoder runs once, then the decoder; a session whose threads kept spinning
            # after its run took the cores from the other one. flan-t5-base int8 (`shellfish
            # bench --model flan-t5-base --engines shellfish-int8,ct2-int8 --lengths 16
            # --contexts 16,128 --repeats 3 --rounds 3`): first token at 128 tokens 69.1 ->
            # 40.6 ms, decode 2.07x -> 3.11x CTranslate2's.
            return create_session(
                path / name, providers=providers, threads=threads, spin_between_runs=False
            )

        self.encoder = session("encoder_model.onnx")
        enc_inputs = {i.name: i for i in self.encoder.get_inputs()}
        self.enc_ids = _pick(enc_inputs, ("input_ids",), "encoder_model.onnx")
        self.enc_mask = "attention_mask" if "attention_mask" in enc_inputs else None
        if (path / "decoder_model_merged.onnx").is_file():
            self.layout = "optimum-merged"
            self.first = session("decoder_model_merged.onnx")
            self.first_wiring = _Wiring(self.first, self.config, "decoder_model_merged.onnx")
            self.later, self.later_wiring = self.first, self.first_wiring
            if not self.first_wiring.use_cache_branch:
                raise ModelError(
                    "decoder_model_merged.onnx has no use_cache_branch input",
                    hint="re-export the model with optimum (merged decoder)",
                )
        elif (path / "decoder_model.onnx").is_file():
            self.layout = "optimum-split"
            self.first = session("decoder_model.onnx")
            self.first_wiring = _Wiring(self.first, self.config, "decoder_model.onnx")
            self.later = session("decoder_with_past_model.onnx")
            self.later_wiring = _Wiring(self.later, self.config, "decoder_with_past_model.onnx")
        else:
            raise ModelError(
                f"no decoder in {path} (expected decoder_model_merged.onnx or decoder_model.onnx)",
                hint=_HINT,
            )
        wiring = self.later_wiring
        self.layers = wiring.layers
        if self.layers < 1 or not all(
            (i, kind, part) in wiring.past
            for i in range(self.layers)
            for kind in ("decoder", "encoder")
            for part in ("key", "value")
        ):
            raise ModelError(
                "the decoder graph has no complete past_key_values.* inputs",
                hint="re-export with a KV cache (optimum task text2text-generation-with-past)",
            )
        self.heads, self.head_dim, self.dtype = wiring.heads, wiring.head_dim, wiring.dtype

    def encode(self, ids: np.ndarray) -> np.ndarray:
        import numpy as np

        feeds = {self.enc_ids: ids}
        if self.enc_mask:
            feeds[self.enc_mask] = np.ones_like(ids)
        return np.asarray(self.encoder.run(None, feeds)[0])

    def _feeds(
        self,
        wiring: _Wiring,
        ids: np.ndarray,
        hidden: np.ndarray,
        mask: np.ndarray,
        past: dict[tuple[int, str, str], np.ndarray] | None,
    ) -> dict[str, Any]:
        import numpy as np

        feeds: dict[str, Any] = {wiring.ids_name: ids}
        for name, value in (("encoder_hidden_states", hidden), ("encoder_attention_mask", mask)):
            if name in wiring.inputs:
                feeds[name] = value
        if wiring.use_cache_branch:
            feeds["use_cache_branch"] = np.array([past is not None])
        if wiring.past:
            if past is None:  # merged graph, no-cache branch: the past inputs are unused
                empty = np.zeros((ids.shape[0], self.heads, 0, self.head_dim), dtype=self.dtype)
                past = {key: empty for key in wiring.past}
            for key, name in wiring.past.items():
                feeds[name] = past[key]
        return feeds

    def run_first(
        self, ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, dict[tuple[int, str, str], np.ndarray]]:
        """The no-cache decoder over `ids`: logits of every position and all present.* caches."""
        w = self.first_wiring
        results = self.first.run(None, self._feeds(w, ids, hidden, mask, None))
        named = dict(zip(w.outputs, results, strict=True))
        caches = {key: named[name] for key, name in w.present.items()}
        return named[w.logits_name], caches

    def run_next(
        self,
        ids: np.ndarray,
        hidden: np.ndarray,
        mask: np.ndarray,
        past: dict[tuple[int, str, str], np.ndarray],
    ) -> tuple[np.ndarray, dict[tuple[int, str, str], np.ndarray]]:
        """One cached step: logits and the grown self-attention caches."""
        w = self.later_wiring
        results = self.later.run(None, self._feeds(w, ids, hidden, mask, past))
        named = dict(zip(w.outputs, results, strict=True))
        grown = {key: named[name] for key, name in w.present.items() if key[1] == "decoder"}
        return named[w.logits_name], grown


class Seq2SeqRunner:
    """A loaded T5-style model; implements `engine.base.Runner`."""

    def __init__(self, path: Path, info: ModelInfo, *, providers: list[str], threads: int) -> None:
        from shellfish.engine.tokenizer import load_tokenizer

        self.path = path
        self.info = info
        self.sessions = _Sessions(path, providers, threads)
        self.tokenizer: Tokenizer = load_tokenizer(path)
        config = self.sessions.config
        self.decoder_start = int(
            config.get("decoder_start_token_id", self.tokenizer.pad_token_id or 0)
        )
        self.pad_id = int(config.get("pad_token_id", self.tokenizer.pad_token_id or 0))
        eos = self.tokenizer.eos_token_ids or {int(config.get("eos_token_id", 1))}
        self.eos_ids: set[int] = set(eos)
        info.extra.setdefault("layers", self.sessions.layers)
        info.extra.setdefault("heads", self.sessions.heads)
        info.extra.setdefault("onnx_layout", self.sessions.layout)

    # --- Runner protocol ---

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def close(self) -> None:
        """Drop the sessions (onnxruntime frees them when the last reference goes)."""
        self.sessions = None  # type: ignore[assignment]

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a prompt, checked: empty -> UsageError, too long -> PromptTooLong."""
        if not prompt or not prompt.strip():
            raise UsageError(
                "the prompt is empty", hint="type a request, e.g. `list files by size`"
            )
        ids = self.tokenizer.encode(prompt)
        limit = self.info.context_length or DEFAULT_CONTEXT
        if len(ids) > limit:
            raise PromptTooLong(
                f"the prompt is {len(ids)} tokens but {self.info.name} reads at most {limit}",
                hint="shorten the request or pick a model with a longer context (the context is "
                "the model's, capped by the engine.max_context setting)",
            )
        return ids

    def generate(
        self,
        prompt: str,
        config: GenerationConfig,
        *,
        cancel: threading.Event | None = None,
        use_cache: bool = True,
    ) -> Iterator[Event]:
        """Stream `Token` events then one `Done` (see the module docstring)."""
        from shellfish.engine.stopping import StopStream

        config.validate()
        started = time.perf_counter()
        ids = self.encode_prompt(prompt)
        rows = 1 if config.num_beams > 1 else config.n
        decoders = [self.tokenizer.stream_decoder() for _ in range(rows)]
        stops = [StopStream(config.stop) for _ in range(rows)]
        state = _LoopState(rows)
        timings: dict[str, float] = {}
        if config.num_beams > 1:
            out = self._beam_search(ids, config, cancel, use_cache, state, timings)
            texts = [self._finish_text(seq, config.stop) for seq in out.sequences]
            completion = len(out.sequences[0]) if out.sequences else 0
            reason = out.finish_reasons[0] if out.finish_reasons else "stop"
            extra: dict[str, Any] = {"scores": out.scores}
        else:
            for row, token in self._sample_loop(ids, config, cancel, use_cache, state, timings):
                if token in self.eos_ids:
                    continue
                shown = stops[row].feed(decoders[row].push(token))
                if stops[row].stopped:
                    state.finish(row, "stop")
                if shown:
                    timings.setdefault("first_token", time.perf_counter())
                    yield Token(shown, index=row)
            texts = []
            for row in range(rows):
                tail = stops[row].feed(decoders[row].flush()) + stops[row].flush()
                if tail:
                    timings.setdefault("first_token", time.perf_counter())
                    yield Token(tail, index=row)
                texts.append(stops[row].text)
            completion = sum(len(s) for s in state.sequences)
            reason = state.reasons[0] or "length"
            extra = {"finish_reasons": [r or "length" for r in state.reasons]}
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
        now = time.perf_counter()
        yield Done(
            texts=texts,
            model=self.info.name,
            prompt_tokens=len(ids),
            completion_tokens=completion,
            prefill_ms=(timings.get("prefill", now) - started) * 1000,
            first_token_ms=(timings.get("first_token", now) - started) * 1000,
            total_ms=(now - started) * 1000,
            finish_reason=reason,
            extra=extra,
        )

    def _finish_text(self, ids: list[int], stop: tuple[str, ...]) -> str:
        from shellfish.engine.stopping import StopStream

        stream = StopStream(stop)
        stream.feed(self.tokenizer.decode(ids))
        return stream.text

    # --- lower level, used by tests and the benchmark ---

    def step_logits(self, input_ids: list[int], decoder_input_ids: list[int]) -> np.ndarray:
        """Next-token logits after `decoder_input_ids` (a full no-cache decoder pass)."""
        import numpy as np

        enc = np.array([input_ids], dtype=np.int64)
        hidden = self.sessions.encode(enc)
        logits, _ = self.sessions.run_first(
            np.array([decoder_input_ids], dtype=np.int64), hidden, np.ones_like(enc)
        )
        return np.asarray(logits[0, -1], dtype=np.float32)

    def generate_ids(
        self,
        input_ids: list[int],
        config: GenerationConfig,
        *,
        use_cache: bool = True,
        cancel: threading.Event | None = None,
        return_logits: bool = False,
    ) -> GenerationOutput:
        """Token-level generation (no text, no stop strings): sequences per sample or beam."""
        config.validate()
        if not input_ids:
            raise UsageError("the prompt is empty", hint="pass at least one input token")
        rows = 1 if config.num_beams > 1 else config.n
        state = _LoopState(rows, keep_logits=return_logits)
        if config.num_beams > 1:
            return self._beam_search(input_ids, config, cancel, use_cache, state, {})
        for _ in self._sample_loop(input_ids, config, cancel, use_cache, state, {}):
            pass
        return GenerationOutput(
            sequences=state.sequences,
            finish_reasons=[r or "length" for r in state.reasons],
            step_logits=state.logits,
        )

    # --- the decoding loops ---

    def _stepper(self, input_ids: list[int], rows: int, use_cache: bool) -> _Stepper:
        import numpy as np

        enc = np.array([input_ids], dtype=np.int64)
        hidden = self.sessions.encode(enc)
        return _Stepper(
            self.sessions,
            np.repeat(hidden, rows, axis=0),
            np.ones((rows, enc.shape[1]), dtype=np.int64),
            self.decoder_start,
            use_cache,
        )

    def _sample_loop(
        self,
        input_ids: list[int],
        config: GenerationConfig,
        cancel: threading.Event | None,
        use_cache: bool,
        state: _LoopState,
        timings: dict[str, float],
    ) -> Iterator[tuple[int, int]]:
        """Greedy or sampled decoding of `state.rows` independent rows; yields (row, token)."""
        import numpy as np

        from shellfish.engine.sampling import sample_next

        rng = np.random.default_rng(config.seed)
        stepper = self._stepper(input_ids, state.rows, use_cache)
        for _ in range(config.max_new_tokens):
            if cancel is not None and cancel.is_set():
                break
            logits = stepper.logits()
            timings.setdefault("prefill", time.perf_counter())
            if state.keep_logits:
                state.logits.append(np.array(logits[0], dtype=np.float32))
            chosen = np.full(state.rows, self.pad_id, dtype=np.int64)
            for row in range(state.rows):
                if state.done[row]:
                    continue
                token = sample_next(
                    logits[row],
                    rng=rng,
                    temperature=config.temperature,
                    top_k=config.top_k,
                    top_p=config.top_p,
                    repetition_penalty=config.repetition_penalty,
                    previous=[self.decoder_start, *state.sequences[row]],
                )
                chosen[row] = token
                state.sequences[row].append(token)
                if token in self.eos_ids:
                    state.finish(row, "stop")
                yield row, token
            if state.done.all():
                break
            stepper.advance(chosen, None)

    def _beam_search(
        self,
        input_ids: list[int],
        config: GenerationConfig,
        cancel: threading.Event | None,
        use_cache: bool,
        state: _LoopState,
        timings: dict[str, float],
    ) -> GenerationOutput:
        """Beam search with transformers' `generate(num_beams=k, do_sample=False)` semantics."""
        import numpy as np

        from shellfish.engine.sampling import apply_repetition_penalty, log_softmax

        k = config.num_beams
        stepper = self._stepper(input_ids, k, use_cache)
        search = _BeamSearch(k, len(self.eos_ids), config)
        max_length = 1 + config.max_new_tokens  # the decoder prompt is the start token
        cancelled = False
        while True:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            logits = stepper.logits()
            timings.setdefault("prefill", time.perf_counter())
            log_probs = log_softmax(logits).astype(np.float32)
            if config.repetition_penalty != 1.0:  # transformers applies it to the log-probs
                for row in range(k):
                    seen = [self.decoder_start, *search.running[row]]
                    log_probs[row] = apply_repetition_penalty(
                        log_probs[row], seen, config.repetition_penalty
                    )
            keep_going, source = search.step(log_probs, self.eos_ids, max_length)
            if not keep_going:
                break
            last = np.array([seq[-1] for seq in search.running], dtype=np.int64)
            stepper.advance(last, source)
        sequences, scores = search.result(cancelled)
        reasons = [
            "cancelled" if cancelled else "stop" if seq and seq[-1] in self.eos_ids else "length"
            for seq in sequences
        ]
        return GenerationOutput(sequences=sequences, finish_reasons=reasons, scores=scores)


class _LoopState:
    """Per-row progress shared between a decoding loop and the text layer above it."""

    def __init__(self, rows: int, keep_logits: bool = False) -> None:
        import numpy as np

        self.rows = rows
        self.sequences: list[list[int]] = [[] for _ in range(rows)]
        self.done = np.zeros(rows, dtype=bool)
        self.reasons: list[str | None] = [None] * rows
        self.keep_logits = keep_logits
        self.logits: list[Any] = []

    def finish(self, row: int, reason: str) -> None:
        if not self.done[row]:
            self.done[row] = True
            self.reasons[row] = reason


class _Stepper:
    """Feeds the decoder one step at a time, with or without the KV cache."""

    def __init__(
        self, sessions: _Sessions, hidden: np.ndarray, mask: np.ndarray, start: int, use_cache: bool
    ) -> None:
        import numpy as np

        self.s = sessions
        self.hidden = hidden
        self.mask = mask
        self.use_cache = use_cache
        self.tokens = np.full((hidden.shape[0], 1), start, dtype=np.int64)  # full decoder input
        self.cache: dict[tuple[int, str, str], np.ndarray] | None = None

    def logits(self) -> np.ndarray:
        """Next-token logits (rows, vocab) for the current decoder inputs."""
        import numpy as np

        if not self.use_cache or self.cache is None:
            logits, caches = self.s.run_first(self.tokens, self.hidden, self.mask)
            if self.use_cache:
                self.cache = caches  # cross-attention caches computed once, here
        else:
            logits, grown = self.s.run_next(self.tokens[:, -1:], self.hidden, self.mask, self.cache)
            self.cache.update(grown)
        return np.asarray(logits[:, -1, :], dtype=np.float32)

    def advance(self, tokens: np.ndarray, source_rows: np.ndarray | None) -> None:
        """Append one token per row; for beams, first reorder rows (and caches) by source beam."""
        import numpy as np

        if source_rows is not None:
            self.tokens = self.tokens[source_rows]
            if self.cache is not None:
                for key in self.cache:
                    if key[1] == "decoder":
                        self.cache[key] = self.cache[key][source_rows]
        self.tokens = np.concatenate([self.tokens, tokens[:, None].astype(np.int64)], axis=1)


class _BeamSearch:
    """transformers' vectorised beam search (batch of one), in numpy.

    Keeps `k` running beams and `k` finished hypotheses; scores of finished ones are divided by
    `generated_length ** length_penalty`. Follows `GenerationMixin._beam_search` step by step,
    including its early-stop heuristic, so results match `generate(num_beams=k)`.
    """

    def __init__(self, k: int, n_eos: int, config: GenerationConfig) -> None:
        import numpy as np

        self.k = k
        self.keep = max(2, 1 + n_eos) * k
        self.length_penalty = config.length_penalty
        self.early_stopping = config.early_stopping
        self.running: list[list[int]] = [[] for _ in range(k)]
        self.running_scores = np.zeros(k, dtype=np.float32)
        self.running_scores[1:] = -1e9
        self.finished: list[list[int]] = [[] for _ in range(k)]
        self.finished_scores = np.full(k, -1e9, dtype=np.float32)
        self.finished_flags = np.zeros(k, dtype=bool)
        self.improvable = True
        self.cur_len = 1

    def step(
        self, log_probs: np.ndarray, eos: set[int], max_length: int
    ) -> tuple[bool, np.ndarray]:
        """Consume one step's log-probs (k, vocab); return (continue?, source beam per row)."""
        import numpy as np

        vocab = log_probs.shape[-1]
        total = (log_probs + self.running_scores[:, None]).reshape(-1)
        # 1. the top `keep` continuations over all beams (more than k, so k can stay open)
        top = np.argsort(-total, kind="stable")[: self.keep]
        top_scores = total[top].astype(np.float32)
        beams, tokens = top // vocab, top % vocab
        candidates = [[*self.running[b], int(t)] for b, t in zip(beams, tokens, strict=True)]
        hits = np.array(
            [int(t) in eos or self.cur_len + 1 >= max_length for t in tokens], dtype=bool
        )
        # 2. the best k that did not finish keep running
        open_scores = top_scores + hits.astype(np.float32) * np.float32(-1e9)
        nxt = np.argsort(-open_scores, kind="stable")[: self.k]
        self.running = [candidates[i] for i in nxt]
        self.running_scores = open_scores[nxt]
        source = beams[nxt]
        # 3. finished candidates among the top k compete with earlier finished hypotheses
        in_top_k = np.arange(self.keep) < self.k
        just_finished = hits & in_top_k
        final = top_scores / np.float32(float(self.cur_len + 1 - 1) ** self.length_penalty)
        if self.finished_flags.all() and self.early_stopping is True:
            final = final + np.float32(-1e9)
        if not self.improvable:
            final = final + np.float32(-1e9)
        final = final + (~just_finished).astype(np.float32) * np.float32(-1e9)
        merged_scores = np.concatenate([self.finished_scores, final])
        merged = self.finished + candidates
        merged_flags = np.concatenate([self.finished_flags, just_finished])
        best = np.argsort(-merged_scores, kind="stable")[: self.k]
        self.finished = [merged[i] for i in best]
        self.finished_scores = merged_scores[best]
        self.finished_flags = merged_flags[best]
        self.cur_len += 1
        # 4. early-stop heuristic: can the best running beam still beat the worst finished one?
        if self.early_stopping == "never" and self.length_penalty > 0:
            best_len = max_length - 1
        else:
            best_len = self.cur_len - 1
        best_running = self.running_scores[0] / np.float32(float(best_len) ** self.length_penalty)
        worst = np.where(self.finished_flags, self.finished_scores.min(), np.float32(-1e9))
        self.improvable = self.improvable and bool(np.any(best_running > worst))
        all_done = bool(self.finished_flags.all()) and self.early_stopping is True
        keep_going = self.improvable and not all_done and not bool(hits.all())
        return keep_going, source

    def result(self, cancelled: bool) -> tuple[list[list[int]], list[float]]:
        """Finished hypotheses best first; running beams fill the slots nobody finished."""
        out, scores = [], []
        for i in range(self.k):
            if self.finished_flags[i]:
                out.append(self.finished[i])
                scores.append(float(self.finished_scores[i]))
        if cancelled or len(out) < self.k:
            for seq, score in zip(self.running, self.running_scores, strict=True):
                if len(out) >= self.k:
                    break
                out.append(seq)
                scores.append(float(score))
        return out, scores


def load(path: Path, info: ModelInfo, *, providers: list[str], threads: int) -> Seq2SeqRunner:
    """Open an optimum seq2seq export (split or merged decoder) in `path`."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model directory is missing: {path}", hint=_HINT)
    return Seq2SeqRunner(path, info, providers=providers, threads=threads)
