"""Decoder-only (causal) runner: GPT-2, Llama, Qwen2, SmolLM2 ... on plain onnxruntime.

Two on-disk layouts are understood:

- optimum: `decoder_model_merged.onnx` (with a `use_cache_branch` input), `model.onnx`, or
  `decoder_model.onnx` + `decoder_with_past_model.onnx`; inputs `input_ids`, `attention_mask`,
  optionally `position_ids`, `past_key_values.{i}.key/value`; outputs `logits`, `present.*`.
- onnxruntime-genai: `genai_config.json` + `model.onnx` (+ `model.onnx.data`); names come from
  the config; GroupQueryAttention graphs share past and present buffers in place.

A graph whose metadata says `shellfish.kv_buffer = shared` (GPT-2's attention rewritten by
`store/attention.py` when it is quantised) shares its buffers too, in either layout.

The wiring (names, dtypes, kv heads, head size, layers) is read from the session and the
config files, never assumed. The loop keeps the KV cache in OrtValues bound through IOBinding
so nothing is copied between steps, and a `PrefixCache` lets a prompt that starts like a recent
one skip the shared part of prefill.
"""

from __future__ import annotations

import json
import operator
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.engine.kvcache import SHARED_BUFFER_MARK, DiskPrefixes, KVState, PrefixCache
from shellfish.errors import ModelError, PromptTooLong, UsageError
from shellfish.events import Done, Event, Token

_PAST = re.compile(r"^past_key_values[._](\d+)[._](key|value)$")
_PRESENT = re.compile(r"^present(?:_key_values)?[._](\d+)[._](key|value)$")
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}

CAUSAL_FILES = ("decoder_model_merged.onnx", "model.onnx", "decoder_model.onnx")
# Model metadata: a pruned LM head that still gives every position's logits in passes of up to
# this many tokens (written by store/convert_worker.short_pass_logits).
SHORT_PASS_KEY = "shellfish.logits_every_position_up_to"
# A one-graph decoder's second graph for long prefills (int8 GEMMs, logits of the last position
# only; written by store/prefill.py) and the shortest pass it takes. Shorter passes - decode steps,
# prompt lookup's checks of a few guesses - and passes that need every position's logits stay
# on the main graph, so decoding after the prompt is the main graph's own.
PREFILL_FILE = "model-prefill.onnx"
PREFILL_MIN_TOKENS = 16


# --------------------------------------------------------------------------------------------
# wiring


@dataclass(frozen=True)
class Wiring:
    """How one decoder session is fed: names, dtypes and cache geometry."""

    input_ids: str
    ids_dtype: str
    logits: str
    logits_dtype: str = "float32"
    attention_mask: str | None = None
    mask_dtype: str = "int64"
    position_ids: str | None = None
    cache_branch: str | None = None  # merged decoders: bool use_cache_branch
    past: tuple[str, ...] = ()  # key0, value0, key1, value1, ...
    present: tuple[str, ...] = ()
    kv_dtype: str = "float32"
    kv_heads: int = 0
    head_dim: int = 0
    shared_buffer: bool = False
    # Longest pass that gets logits at every position: 0 = any (an unpruned LM head); else
    # what store/convert_worker.short_pass_logits recorded, or 1 (a pruned head: last only).
    every_logit_up_to: int = 0

    @property
    def num_layers(self) -> int:
        return len(self.past) // 2


def _dtype(type_str: str, what: str) -> str:
    if type_str not in _DTYPES:
        raise ModelError(
            f"unsupported {what} type {type_str}",
            hint="export the model with float32 or float16 tensors",
        )
    return _DTYPES[type_str]


def _ordered(names: dict[tuple[int, str], str], what: str) -> tuple[str, ...]:
    layers = sorted({i for i, _ in names})
    if layers != list(range(len(layers))) or any(
        (i, k) not in names for i in layers for k in ("key", "value")
    ):
        raise ModelError(f"the graph's {what} tensors are incomplete: {sorted(names.values())}")
    return tuple(names[(i, k)] for i in layers for k in ("key", "value"))


def _pattern(template: str | None, default: re.Pattern[str]) -> re.Pattern[str]:
    """A genai name template like 'past_key_values.%d.key' as a regex with a layer group."""
    if not template or "%d" not in template:
        return default
    head, tail = template.split("%d", 1)
    return re.compile("^" + re.escape(head) + r"(\d+)" + re.escape(tail) + "$")


def read_wiring(
    session: Any,
    *,
    kv_heads: int = 0,
    head_dim: int = 0,
    names: dict[str, Any] | None = None,
    shared_buffer: bool = False,
) -> Wiring:
    """Read the feed/fetch wiring of a decoder session.

    `names` are genai_config's decoder `inputs` + `outputs` maps when there is one; `kv_heads` /
    `head_dim` come from the config and are only used where the graph leaves the dims symbolic.
    """
    names = names or {}
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    ids_name = names.get("input_ids", "input_ids")
    if ids_name not in inputs:
        raise ModelError(f"the graph has no {ids_name!r} input; inputs are {sorted(inputs)}")
    logits_name = names.get("logits", "logits")
    if logits_name not in outputs:
        raise ModelError(f"the graph has no {logits_name!r} output; outputs are {sorted(outputs)}")
    mask_name = names.get("attention_mask", "attention_mask")
    pos_name = names.get("position_ids", "position_ids")

    past: dict[tuple[int, str], str] = {}
    present: dict[tuple[int, str], str] = {}
    key_pat = _pattern(names.get("past_key_names"), _PAST)
    value_pat = _pattern(names.get("past_value_names"), _PAST)
    for name in inputs:
        for pat, kind in ((key_pat, "key"), (value_pat, "value")):
            m = pat.match(name)
            if m and (pat is not _PAST or m.group(2) == kind):
                past[(int(m.group(1)), kind)] = name
    pkey_pat = _pattern(names.get("present_key_names"), _PRESENT)
    pvalue_pat = _pattern(names.get("present_value_names"), _PRESENT)
    for name in outputs:
        for pat, kind in ((pkey_pat, "key"), (pvalue_pat, "value")):
            m = pat.match(name)
            if m and (pat is not _PRESENT or m.group(2) == kind):
                present[(int(m.group(1)), kind)] = name
    past_names = _ordered(past, "past_key_values") if past else ()
    present_names = _ordered(present, "present") if present else ()
    if past_names and len(past_names) != len(present_names):
        raise ModelError(
            f"the graph has {len(past_names) // 2} past layers "
            f"but {len(present_names) // 2} present layers"
        )

    kv_dtype = "float32"
    if past_names or present_names:
        first = inputs[past_names[0]] if past_names else outputs[present_names[0]]
        kv_dtype = _dtype(first.type, "key/value cache")
        shape = list(first.shape)
        # [batch, kv_heads, seq, head_dim]: a fixed dim in the graph beats the config
        if len(shape) == 4:
            if isinstance(shape[1], int) and shape[1] > 0:
                kv_heads = shape[1]
            if isinstance(shape[3], int) and shape[3] > 0:
                head_dim = shape[3]
        if kv_heads <= 0 or head_dim <= 0:
            raise ModelError(
                "cannot tell the key/value cache shape (kv heads, head size) "
                "from the graph or config",
                hint="put config.json (or genai_config.json) beside the model",
            )

    cache_branch = next(
        (n for n in inputs if n == "use_cache_branch" or n.endswith("use_cache_branch")), None
    )
    every_up_to = 0
    logits_shape = list(outputs[logits_name].shape)
    if len(logits_shape) == 3 and logits_shape[1] == 1:  # a pruned LM head
        raw = session.get_modelmeta().custom_metadata_map.get(SHORT_PASS_KEY, "")
        every_up_to = int(raw) if raw.isdigit() and int(raw) > 1 else 1
    return Wiring(
        input_ids=ids_name,
        ids_dtype=_dtype(inputs[ids_name].type, "input_ids"),
        logits=logits_name,
        logits_dtype=_dtype(outputs[logits_name].type, "logits"),
        attention_mask=mask_name if mask_name in inputs else None,
        mask_dtype=_dtype(inputs[mask_name].type, "attention_mask")
        if mask_name in inputs
        else "int64",
        position_ids=pos_name if pos_name in inputs else None,
        cache_branch=cache_branch,
        past=past_names,
        present=present_names,
        kv_dtype=kv_dtype,
        kv_heads=kv_heads,
        head_dim=head_dim,
        shared_buffer=shared_buffer and bool(past_names),
        every_logit_up_to=every_up_to,
    )


# --------------------------------------------------------------------------------------------
# one decoder: sessions + forward


def _same_objects(a: list[Any] | None, b: list[Any]) -> bool:
    # map(operator.is_): one C loop (a generator took ~20 us a step over 60 tensors)
    return a is not None and len(a) == len(b) and all(map(operator.is_, a, b))


class Decoder:
    """One causal decoder (one or two sessions) with an IOBinding forward pass.

    `forward(ids, state)` runs the new tokens `ids` (batch, seq) after `state` and returns the
    logits for every new position plus the new state. States are never modified in place by
    the growing layout; the shared layout writes into the state's own buffers (and returns it).
    """

    def __init__(
        self,
        main: Any,
        wiring: Wiring,
        *,
        first: Any = None,
        first_wiring: Wiring | None = None,
        prefill: Any = None,
    ):
        import numpy as np
        import onnxruntime as ort

        self._np = np
        self._ort = ort
        self.main = main
        self.wiring = wiring
        self.first = first  # split layout: decoder_model.onnx for the no-past pass
        self.first_wiring = first_wiring
        # one-graph layouts: the int8-GEMM graph (store/prefill.py) for passes of at least
        # PREFILL_MIN_TOKENS new tokens that need the last logits only; `main`'s wiring.
        self.prefill = prefill
        self._bind_main = main.io_binding()
        self._bind_first = first.io_binding() if first is not None else None
        self._bind_prefill = prefill.io_binding() if prefill is not None else None
        self._kv_dtype = np.dtype(wiring.kv_dtype)
        self._empty_cache: dict[int, list[Any]] = {}
        self._step_logits: dict[int, tuple[Any, Any]] = {}  # batch -> (array, OrtValue)
        # Attention masks and position ids are views of two growing buffers (ones, 0..n-1):
        # a fresh np.ones every step cost ~8 us right after a run.
        self._ones: dict[str, Any] = {}
        self._positions: Any = np.arange(0, dtype=np.int64)
        # Shared-buffer layout: the KV OrtValues bound to each binding last time. IOBinding
        # keeps bindings across runs, so the same buffers need no re-binding every step (that
        # was 4 x layers Python calls per token, the largest Python cost of a decode step).
        # Holding the list keeps the objects alive, so the identity check cannot be fooled.
        self._bound_kv: dict[int, list[Any]] = {}
        self._bound_logits: dict[int, Any] = {}  # binding -> the step logits OrtValue bound

    @property
    def has_cache(self) -> bool:
        return bool(self.wiring.past)

    @property
    def most_guesses(self) -> int:
        """How many guessed tokens one pass can check (prompt lookup); 0: none."""
        if not self.has_cache:
            return 0
        up_to = self.wiring.every_logit_up_to
        return 64 if up_to == 0 else up_to - 1

    def empty(self, batch: int, capacity: int = 0) -> KVState:
        """A state with no positions; `capacity` sizes the buffers of the shared layout."""
        np = self._np
        w = self.wiring
        if w.shared_buffer:
            capacity = max(capacity, 1)
            shape = (batch, w.kv_heads, capacity, w.head_dim)
            arrays = [np.zeros(shape, dtype=self._kv_dtype) for _ in w.past]
            tensors = [self._ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
            return KVState(tensors, 0, batch, arrays=arrays, capacity=capacity)
        if batch not in self._empty_cache:
            zero = np.zeros((batch, w.kv_heads, 0, w.head_dim), dtype=self._kv_dtype)
            self._empty_cache[batch] = [
                self._ort.OrtValue.ortvalue_from_numpy(zero) for _ in w.past
            ]
        return KVState(list(self._empty_cache[batch]), 0, batch)

    def ensure_capacity(self, state: KVState, needed: int) -> KVState:
        """Shared layout: a state whose buffers hold at least `needed` positions."""
        if not state.shared or state.capacity >= needed:
            return state
        bigger = self.empty(state.batch, max(needed, 2 * state.capacity))
        for src, dst in zip(state.arrays, bigger.arrays, strict=True):
            dst[:, :, : state.length] = src[:, :, : state.length]
        bigger.length = state.length
        return bigger

    def forward(self, ids: Any, state: KVState, *, last_only: bool = False) -> tuple[Any, KVState]:
        """Logits for the new positions of `ids` after `state`, and the state after them.

        `last_only`: the caller reads the last position's logits only, which lets a long pass
        run on the prefill graph (its logits are that one row).
        """
        np = self._np
        ids = np.ascontiguousarray(ids)
        batch, seq = ids.shape
        past_len = state.length
        total = past_len + seq
        use_first = self.first is not None and past_len == 0
        w = self.first_wiring if use_first else self.wiring
        assert w is not None
        session = self.first if use_first else self.main
        binding = self._bind_first if use_first else self._bind_main
        if last_only and self._bind_prefill is not None and seq >= PREFILL_MIN_TOKENS:
            session, binding = self.prefill, self._bind_prefill
        assert binding is not None
        if state.shared:
            state = self.ensure_capacity(state, total)

        binding.bind_cpu_input(w.input_ids, ids.astype(w.ids_dtype, copy=False))
        if w.attention_mask:
            binding.bind_cpu_input(w.attention_mask, self._mask(w.mask_dtype, batch, total))
        if w.position_ids:
            if self._positions.size < total:
                self._positions = np.arange(max(total, 2 * self._positions.size), dtype=np.int64)
            pos = self._positions[None, past_len:total]  # np.broadcast_to: ~20 us
            binding.bind_cpu_input(w.position_ids, pos if batch == 1 else pos.repeat(batch, 0))
        if w.cache_branch:
            binding.bind_cpu_input(w.cache_branch, np.array([past_len > 0]))
        kv_bound = state.shared and _same_objects(self._bound_kv.get(id(binding)), state.tensors)
        if w.past and not kv_bound:  # (the split layout's first graph takes no cache inputs)
            for name, value in zip(w.past, state.tensors, strict=True):
                binding.bind_ortvalue_input(name, value)
        if seq == 1:
            # Decode steps write logits into one reused buffer: no allocation, no copy out.
            if batch not in self._step_logits:
                array = np.empty((batch, 1, self._vocab(w)), dtype=w.logits_dtype)
                self._step_logits[batch] = (array, self._ort.OrtValue.ortvalue_from_numpy(array))
            logits_array, logits_value = self._step_logits[batch]
            if self._bound_logits.get(id(binding)) is not logits_value:  # bindings persist
                binding.bind_ortvalue_output(w.logits, logits_value)
                self._bound_logits[id(binding)] = logits_value
        else:
            logits_array = None
            binding.bind_output(w.logits, "cpu")
            self._bound_logits[id(binding)] = None
        if state.shared:
            if not kv_bound:
                for name, value in zip(w.present, state.tensors, strict=True):
                    binding.bind_ortvalue_output(name, value)
                self._bound_kv[id(binding)] = list(state.tensors)
        else:
            for name in w.present:
                binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        if state.shared and logits_array is not None:
            state.length = total
            return logits_array, state
        outs = binding.get_outputs()
        logits = logits_array if logits_array is not None else outs[0].numpy()
        if state.shared:
            state.length = total
            return logits, state
        return logits, KVState(list(outs[1:]), total, batch)

    def _mask(self, dtype: str, batch: int, total: int) -> Any:
        """A (batch, total) attention mask of ones: a contiguous view of a reused buffer (the
        binding reads its memory during the run; nothing writes to the buffer)."""
        ones = self._ones.get(dtype)
        if ones is None or ones.size < batch * total:
            size = max(batch * total, 2 * (0 if ones is None else ones.size), 256)
            ones = self._ones[dtype] = self._np.ones(size, dtype=dtype)
        return ones[: batch * total].reshape(batch, total)

    def _vocab(self, w: Wiring) -> int:
        session = self.first if w is self.first_wiring and self.first is not None else self.main
        dim = next(o.shape for o in session.get_outputs() if o.name == w.logits)[-1]
        if not isinstance(dim, int):
            raise ModelError(
                "the graph's logits have no fixed vocabulary size", hint="re-export the model"
            )
        return dim

    # ---- state surgery for the prefix cache, n samples and prompt lookup -------------------

    def truncate(self, state: KVState, length: int) -> KVState:
        """The state cut back to its first `length` positions (drops unchecked guesses)."""
        if length >= state.length:
            return state
        if state.shared:  # the graph reads only `length` positions and overwrites the rest
            state.length = length
            return state
        tensors = [
            self._ort.OrtValue.ortvalue_from_numpy(
                self._np.ascontiguousarray(t.numpy()[:, :, :length])
            )
            for t in state.tensors
        ]
        return KVState(tensors, length, state.batch)

    def export(self, state: KVState, length: int) -> list[Any]:
        """Compact arrays holding the first `length` positions of a batch-1 state: copies, which
        stay as they are whatever runs next. (A growing state's tensors are what the binding's
        `get_outputs` returned, and some onnxruntime versions - 1.23 - return views of the
        binding's output slots there, which the next run on the binding overwrites: sharing them
        had a prefix-cache entry change under its key.)"""
        if state.shared:
            return [a[:, :, :length].copy() for a in state.arrays]
        return [t.numpy()[:, :, :length].copy() for t in state.tensors]

    def restore(self, tensors: list[Any], length: int, capacity: int) -> KVState:
        """A fresh state from `export`ed tensors, truncated to `length` positions."""
        np = self._np
        if self.wiring.shared_buffer:
            state = self.empty(1, max(capacity, length))
            for src, dst in zip(tensors, state.arrays, strict=True):
                data = (
                    src.numpy()
                    if hasattr(src, "numpy") and not isinstance(src, np.ndarray)
                    else src
                )
                dst[:, :, :length] = data[:, :, :length]
            state.length = length
            return state
        values = []
        for t in tensors:
            if isinstance(t, np.ndarray):
                values.append(
                    self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(t[:, :, :length]))
                )
            elif t.shape()[2] == length:
                values.append(t)
            else:
                values.append(
                    self._ort.OrtValue.ortvalue_from_numpy(t.numpy()[:, :, :length].copy())
                )
        return KVState(values, length, 1)

    def tile(self, state: KVState, n: int) -> KVState:
        """Repeat a batch-1 state into n identical rows (for n independent samples)."""
        np = self._np
        if n == 1:
            return state
        if state.shared:
            arrays = [np.repeat(a, n, axis=0) for a in state.arrays]
            tensors = [self._ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
            return KVState(tensors, state.length, n, arrays=arrays, capacity=state.capacity)
        tensors = [
            self._ort.OrtValue.ortvalue_from_numpy(np.repeat(t.numpy(), n, axis=0))
            for t in state.tensors
        ]
        return KVState(tensors, state.length, n)

    def nbytes(self, length: int, batch: int = 1) -> int:
        w = self.wiring
        return len(w.past) * batch * w.kv_heads * length * w.head_dim * self._kv_dtype.itemsize


# --------------------------------------------------------------------------------------------
# the runner


@dataclass
class GenerationResult:
    """What `generate_ids` returns: generated ids per sample (EOS included when produced)."""

    ids: list[list[int]]
    finish_reasons: list[str]
    prompt_tokens: int
    prefill_tokens: int
    prefix_reused_tokens: int
    prefill_ms: float
    first_token_ms: float
    total_ms: float
    cancelled: bool = False
    step_logits: list[Any] = field(default_factory=list)  # row-0 logits per step, when asked


@dataclass
class _Run:
    """Book-keeping of one decode loop (filled as it goes)."""

    prompt_tokens: int = 0
    prefill_tokens: int = 0
    reused: int = 0
    prefill_ms: float = 0.0
    first_token_ms: float = 0.0
    cancelled: bool = False
    finish: list[str] = field(default_factory=list)
    # Per sample: the model's log-probability (untempered) of each token it produced.
    logprobs: list[list[float]] = field(default_factory=list)
    # Prompt lookup: forward passes after the prefill, tokens guessed, guesses that held.
    passes: int = 0
    guessed: int = 0
    accepted: int = 0


class CausalRunner:
    """A loaded decoder-only model; implements the `Runner` protocol of engine.base."""

    def __init__(
        self,
        info: ModelInfo,
        decoder: Decoder,
        tokenizer: Any,
        *,
        eos_ids: set[int],
        context_length: int,
        prefix_cache: PrefixCache | None = None,
        disk_prefixes: DiskPrefixes | None = None,
    ) -> None:
        self.info = info
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids)
        self.context_length = context_length
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()
        # System turns kept on disk (chat templates with a system turn only; see DiskPrefixes)
        self.disk_prefixes = disk_prefixes if decoder.has_cache else None
        self._system_turn = _system_turn_marks(tokenizer) if self.disk_prefixes else None
        self._disk_read = False
        self._lock = threading.Lock()  # one generation at a time: the IOBindings are shared

    # ---- Runner protocol -------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def close(self) -> None:
        self.prefix_cache.clear()
        self.decoder = None  # type: ignore[assignment]

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        """Stream Token events (per sample index) then one Done."""
        from shellfish.engine.stopping import StopStream

        config.validate()
        if not prompt:
            raise UsageError("the prompt is empty", hint="type a request")
        ids = list(self.tokenizer.encode(prompt))
        start = time.perf_counter()
        n = config.n
        decoders = [self.tokenizer.stream_decoder() for _ in range(n)]
        stops = [StopStream(config.stop) for _ in range(n)]
        counts = [0] * n
        run = _Run()
        steps = self._decode(ids, config, cancel=cancel, use_cache=True, run=run, start=start)
        for tokens, active, alive in steps:
            for i in range(n):
                if not active[i]:
                    continue
                tok = int(tokens[i])
                if tok in self.eos_ids:
                    continue
                counts[i] += 1
                shown = stops[i].feed(decoders[i].push(tok))
                if shown:
                    yield Token(shown, index=i)
                if stops[i].stopped:
                    alive[i] = False
                    run.finish[i] = "stop"
        texts = []
        for i in range(n):
            tail = stops[i].feed(decoders[i].flush())
            tail += stops[i].flush()
            if tail:
                yield Token(tail, index=i)
            texts.append(stops[i].text)
        total_ms = (time.perf_counter() - start) * 1000
        if run.cancelled:
            reason = "cancelled"
        elif "length" in run.finish:
            reason = "length"
        else:
            reason = "stop"
        completion = sum(counts)
        decode_s = max((total_ms - run.first_token_ms) / 1000, 1e-9)
        yield Done(
            texts=texts,
            model=self.info.name,
            prompt_tokens=len(ids),
            completion_tokens=completion,
            prefill_ms=run.prefill_ms,
            first_token_ms=run.first_token_ms,
            total_ms=total_ms,
            finish_reason=reason,
            extra={
                "prefill_tokens": run.prefill_tokens,
                "prefix_reused_tokens": run.reused,
                "finish_reasons": list(run.finish),
                "decode_tokens_per_s": round(max(completion - n, 0) / decode_s, 2),
                # mean log-probability per generated token of each sample: a confidence signal
                **(
                    {
                        "mean_logprobs": [
                            round(sum(lp) / len(lp), 4) if lp else None for lp in run.logprobs
                        ]
                    }
                    if config.logprobs
                    else {}
                ),
                "layout": self.info.layout,
                "decode_passes": run.passes,
                **(
                    {"lookup_guessed": run.guessed, "lookup_accepted": run.accepted}
                    if config.prompt_lookup
                    else {}
                ),
            },
        )

    # ---- lower level -----------------------------------------------------------------------

    def forward(
        self, ids: Sequence[int] | Any, state: KVState | None = None
    ) -> tuple[Any, KVState]:
        """Logits (batch, seq, vocab) for `ids` after `state` (None: from the start).

        The logits are the caller's own copy; a shared-buffer state is updated in place, a
        growing one returned as copies of batch 1 (the caller may keep it across later passes:
        see `Decoder.export`).
        """
        np = self.decoder._np
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if state is None:
            state = self.decoder.empty(arr.shape[0], arr.shape[1])
        logits, state = self.decoder.forward(arr, state)
        if not state.shared and state.batch == 1:
            kept = self.decoder.export(state, state.length)
            state = self.decoder.restore(kept, state.length, state.length)
        return np.array(logits, dtype=np.float32), state

    def generate_ids(
        self,
        prompt_ids: Sequence[int],
        config: GenerationConfig,
        *,
        use_cache: bool = True,
        use_prefix_cache: bool = True,
        cancel: threading.Event | None = None,
        keep_logits: bool = False,
    ) -> GenerationResult:
        """Token-level generation (no detokenization, no stop strings): for parity tests."""
        config.validate()
        start = time.perf_counter()
        run = _Run()
        n = config.n
        out: list[list[int]] = [[] for _ in range(n)]
        step_logits: list[Any] = []
        steps = self._decode(
            list(prompt_ids),
            config,
            cancel=cancel,
            use_cache=use_cache,
            run=run,
            start=start,
            use_prefix_cache=use_prefix_cache,
            logits_sink=step_logits if keep_logits else None,
        )
        for tokens, active, _alive in steps:
            for i in range(n):
                if active[i]:
                    out[i].append(int(tokens[i]))
        return GenerationResult(
            ids=out,
            finish_reasons=list(run.finish),
            prompt_tokens=run.prompt_tokens,
            prefill_tokens=run.prefill_tokens,
            prefix_reused_tokens=run.reused,
            prefill_ms=run.prefill_ms,
            first_token_ms=run.first_token_ms,
            total_ms=(time.perf_counter() - start) * 1000,
            cancelled=run.cancelled,
            step_logits=step_logits,
        )

    # ---- the loop --------------------------------------------------------------------------

    def _check_prompt(self, ids: Sequence[int]) -> None:
        if not ids:
            raise UsageError("the prompt is empty", hint="type a request")
        if len(ids) >= self.context_length:
            raise PromptTooLong(
                f"the prompt is {len(ids)} tokens but {self.info.name} reads at most "
                f"{self.context_length - 1} (context {self.context_length})",
                hint="shorten the request or its context (the context is the model's, capped by "
                "the engine.max_context setting)",
            )

    def _prefill(
        self, ids: list[int], capacity: int, use_prefix_cache: bool, run: _Run
    ) -> tuple[Any, KVState]:
        """KV state and last-position logits (1, vocab) after the prompt, reusing a prefix."""
        decoder = self.decoder
        reused = 0
        state = None
        logits = None
        if use_prefix_cache and decoder.has_cache:
            self._read_disk_prefixes()
            entry, common = self.prefix_cache.lookup(ids)
            if entry is not None:
                if common == len(ids) == len(entry.tokens) and entry.logits is not None:
                    reused = common
                    logits = entry.logits[None, :]
                else:
                    reused = min(common, len(ids) - 1)
                if reused > 0:
                    state = decoder.restore(entry.kv, reused, capacity)
        if state is None:
            reused = 0
            state = decoder.empty(1, capacity)
        run.reused = reused
        run.prefill_tokens = len(ids) - reused
        if logits is None:
            t0 = time.perf_counter()
            full, state = decoder.forward(self._np_ids(ids[reused:]), state, last_only=True)
            run.prefill_ms = (time.perf_counter() - t0) * 1000
            logits = full[:, -1, :]
        return logits, state

    def _np_ids(self, ids: Sequence[int]) -> Any:
        return self.decoder._np.asarray(ids, dtype=self.decoder._np.int64)[None, :]

    def _decode(
        self,
        ids: list[int],
        config: GenerationConfig,
        *,
        cancel: threading.Event | None,
        use_cache: bool,
        run: _Run,
        start: float,
        use_prefix_cache: bool = True,
        logits_sink: list[Any] | None = None,
    ) -> Iterator[tuple[Any, Any, Any]]:
        """Yield (tokens, active, alive) per step; the consumer may clear alive[i] to end row i.

        `active` says which rows produced a real token this step (the rest are finished and get
        filler). EOS ends a row here; running out of room ends all rows with "length".
        """
        from shellfish.engine.sampling import sample_next

        np = self.decoder._np
        self._check_prompt(ids)
        n = config.n
        run.prompt_tokens = len(ids)
        run.finish = ["length"] * n
        run.logprobs = [[] for _ in range(n)]
        max_new = min(config.max_new_tokens, self.context_length - len(ids))
        capacity = len(ids) + max_new
        use_cache = use_cache and self.decoder.has_cache
        greedy = config.temperature <= 0 and config.repetition_penalty == 1.0
        rng = np.random.default_rng(config.seed)
        eos = np.fromiter(sorted(self.eos_ids), dtype=np.int64) if self.eos_ids else None
        filler = int(eos[0]) if eos is not None else 0
        # EOS test by table lookup (built at the first step, when the vocabulary is known):
        # np.isin cost ~0.2 ms a step, a third of a tiny model's whole step.
        eos_table: Any = None
        history = np.empty((n, capacity), dtype=np.int64)
        history[:, : len(ids)] = ids
        length = len(ids)
        fed = length  # history tokens that `logits` follow
        alive = np.ones(n, dtype=bool)
        one_row = np.ones(1, dtype=bool)  # `active` of every step of one row
        lookup = min(config.prompt_lookup, self.decoder.most_guesses) if use_cache else 0
        lookup = lookup if greedy and n == 1 else 0
        guesses: list[int] = []  # prompt lookup: guessed tokens not yet checked ...
        ahead: list[Any] = []  # ... and the logits after each of them

        with self._lock:
            if use_cache:
                logits, state = self._prefill(ids, capacity, use_prefix_cache, run)
                if n > 1:
                    state = self.decoder.tile(state, n)
                    logits = np.repeat(logits, n, axis=0)
            else:
                run.prefill_tokens = len(ids)
                t0 = time.perf_counter()
                full, _ = self.decoder.forward(
                    history[:1, :length], self.decoder.empty(1, length), last_only=True
                )
                run.prefill_ms = (time.perf_counter() - t0) * 1000
                logits = np.repeat(full[:, -1, :], n, axis=0)
            for step in range(max_new):
                if cancel is not None and cancel.is_set():
                    run.cancelled = True
                    run.finish = [
                        "cancelled" if a else f for a, f in zip(alive, run.finish, strict=True)
                    ]
                    break
                # pick: argmax for plain greedy, else the sampling pipeline per row
                if logits_sink is not None:
                    logits_sink.append(np.array(logits[0], dtype=np.float32))
                if greedy:
                    tokens = logits.argmax(axis=-1)
                else:
                    tokens = np.array(
                        [
                            sample_next(
                                logits[i],
                                rng=rng,
                                temperature=config.temperature,
                                top_k=config.top_k,
                                top_p=config.top_p,
                                repetition_penalty=config.repetition_penalty,
                                previous=history[i, :length],
                            )
                            for i in range(n)
                        ],
                        dtype=np.int64,
                    )
                # One row is alive at every step (the loop ends when it is not): a constant
                # `active`, and below Python tests instead of numpy reductions, which cost
                # ~12 us each right after a run.
                active = one_row if n == 1 else alive.copy()
                if n > 1:  # finished rows get filler
                    tokens = np.where(active, tokens, filler)
                if config.logprobs:
                    _record_logprobs(np, logits, tokens, active, run.logprobs)
                history[:, length] = tokens
                length += 1
                if step == 0:
                    run.first_token_ms = (time.perf_counter() - start) * 1000
                if eos is not None:
                    if eos_table is None:
                        eos_table = np.zeros(max(logits.shape[-1], int(eos[-1]) + 1), dtype=bool)
                        eos_table[eos] = True
                    if n == 1:
                        if eos_table[tokens[0]]:
                            alive[0] = False
                            run.finish[0] = "stop"
                    else:
                        ended = active & eos_table[tokens]
                        if ended.any():
                            alive &= ~ended
                            for i in np.flatnonzero(ended):
                                run.finish[i] = "stop"
                yield tokens, active, alive
                if not (alive[0] if n == 1 else alive.any()):  # the consumer may end rows too
                    break
                if step == max_new - 1:
                    break
                if lookup:
                    token = int(tokens[0])
                    if guesses and token == guesses[0]:
                        # A guess held: its position is in the cache, its logits are at hand.
                        guesses.pop(0)
                        logits = ahead.pop(0)
                        fed += 1
                        run.accepted += 1
                        continue
                    state = self.decoder.truncate(state, fed)  # drop the guesses that failed
                    room = max_new - step - 2  # picks left after the one these logits make
                    guesses = lookup_guess(history[0, :length], min(lookup, room))
                    run.guessed += len(guesses)
                    full, state = self.decoder.forward(np.array([[token, *guesses]]), state)
                    logits = full[:, 0, :]
                    ahead = [full[:, j, :] for j in range(1, len(guesses) + 1)]
                elif use_cache:
                    full, state = self.decoder.forward(tokens[:, None], state)
                    logits = full[:, -1, :]
                else:
                    full, _ = self.decoder.forward(
                        history[:, :length], self.decoder.empty(n, length)
                    )
                    logits = full[:, -1, :]
                fed = length
                run.passes += 1
            for i in range(n):
                if run.finish[i] == "length" and not alive[i]:
                    run.finish[i] = "stop"
            # Keep this conversation's state: the next prompt often extends it.
            if use_cache and use_prefix_cache and n == 1 and fed > 0:
                kept = fed  # `logits` follow exactly these positions (not unchecked guesses)
                self.prefix_cache.put(
                    [int(t) for t in history[0, :kept]],
                    self.decoder.export(state, kept),
                    np.array(logits[0], dtype=np.float32),
                    self.decoder.nbytes(kept),
                )
                if config.keep_system_turn:
                    self._keep_system_turn([int(t) for t in history[0, :kept]], state)

    # ---- system turns on disk ------------------------------------------------------------

    def system_turn_length(self, ids: Sequence[int]) -> int:
        """Tokens of the prompt's system turn (through its end-of-turn line), 0 unless the prompt
        opens with a system turn and another turn follows it."""
        if self._system_turn is None:
            return 0
        start, end = self._system_turn
        if tuple(ids[: len(start)]) != start:
            return 0
        for i in range(len(start), len(ids) - len(end)):
            if tuple(ids[i : i + len(end)]) == end:
                # the first end of a turn, and the next turn opens right after it
                return i + len(end) if ids[i + len(end)] == start[0] else 0
        return 0

    def _read_disk_prefixes(self) -> None:
        if self.disk_prefixes is None or self._disk_read:
            return
        self._disk_read = True
        w = self.decoder.wiring
        for tokens, arrays in self.disk_prefixes.load(
            len(w.past), (w.kv_heads, w.head_dim), w.kv_dtype
        ):
            self.prefix_cache.put(tokens, arrays, None, self.decoder.nbytes(len(tokens)))

    def _keep_system_turn(self, tokens: list[int], state: KVState) -> None:
        if self.disk_prefixes is None:
            return
        head = self.system_turn_length(tokens)
        if head:
            self.disk_prefixes.save(tokens[:head], self.decoder.export(state, head))


def _system_turn_marks(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Token sequences that open and close a ChatML system turn, when the tokenizer has ChatML's
    special tokens (the other templates keep no system turn on disk)."""
    try:
        start = tuple(tokenizer.encode("<|im_start|>system\n"))
        end = tuple(tokenizer.encode("<|im_end|>\n"))
        specials = tuple(tokenizer.encode("<|im_start|><|im_end|>"))
    except Exception:
        return None
    if len(specials) != 2 or not start or start[0] != specials[0] or end[:1] != specials[1:]:
        return None  # the markers are not single special tokens here
    return start, end


def lookup_guess(sequence: Any, k: int, max_ngram: int = 3, min_ngram: int = 2) -> list[int]:
    """Up to k tokens that followed the latest earlier occurrence of the sequence's last
    n tokens (n from `max_ngram` down to `min_ngram`); [] when nothing earlier matches.

    Two tokens at least by default: on 30 suggestion requests (Qwen2.5-Coder, int8) a
    one-token match guessed wrong often enough that its failed passes cost more than it saved
    (`benchmarks/prompt_lookup.py`).
    """
    if k <= 0:
        return []
    seq = [int(t) for t in sequence]
    end = len(seq)
    for n in range(min(max_ngram, end - 1), min_ngram - 1, -1):
        tail = seq[end - n :]
        first = tail[0]
        for start in range(end - n - 1, -1, -1):
            if seq[start] == first and seq[start : start + n] == tail:
                return seq[start + n : min(start + n + k, end)]
    return []


def _record_logprobs(
    np: Any, logits: Any, tokens: Any, active: Any, sink: list[list[float]]
) -> None:
    """Append log p(token) of each active row (from the raw logits, before any sampling)."""
    rows = np.flatnonzero(active)
    if not len(rows):
        return
    # Every row active (always so for one sample): no fancy-index copy of the logits.
    picked = logits if len(rows) == len(logits) else logits[rows]
    top = picked.max(axis=-1)
    shifted = np.subtract(picked, top[:, None])  # one vocab-sized buffer, exp'd in place
    np.exp(shifted, out=shifted)
    log_z = top + np.log(shifted.sum(axis=-1))
    chosen = picked[np.arange(len(rows)), tokens[rows]]
    for row, value in zip(rows, chosen - log_z, strict=True):
        sink[int(row)].append(float(value))


# --------------------------------------------------------------------------------------------
# loading


def _marked_shared(session: Any) -> bool:
    """Whether the graph's metadata says its past and present are one buffer."""
    key, value = SHARED_BUFFER_MARK
    try:
        meta = session.get_modelmeta().custom_metadata_map
    except Exception:  # a session without metadata support (a test double)
        return False
    return bool(meta.get(key) == value)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path.name}: {exc}", hint="reinstall the model") from exc
    return data if isinstance(data, dict) else {}


def _ids(value: Any) -> set[int]:
    if isinstance(value, int):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()


def _first_int(*values: Any) -> int:
    for v in values:
        if isinstance(v, int) and v > 0:
            return v
    return 0


def load(
    path: Path,
    info: ModelInfo,
    *,
    providers: list[str],
    threads: int,
    tokenizer: Any = None,
    prefix_cache: PrefixCache | None = None,
    prefill_graph: bool = False,
    disk_prefixes: DiskPrefixes | None = None,
) -> CausalRunner:
    """Load a causal model dir (optimum or onnxruntime-genai layout) as a runner.

    `prefill_graph`: also load the model's int8-GEMM prefill graph when it has one
    (`store/prefill.py`; genai, optimum's `model.onnx` or merged decoder), for long-lived
    processes: a second session, ~0.4 s of load and ~0.5 GB for Qwen2.5-Coder-0.5B, that
    prefills a 232-token prompt in ~190 ms instead of ~300.
    """
    from shellfish.engine.providers import create_session

    path = Path(path)
    genai = _read_json(path / "genai_config.json")
    config = _read_json(path / "config.json")
    gen_config = _read_json(path / "generation_config.json")
    model_cfg = genai.get("model", {}) if genai else {}
    dec_cfg = model_cfg.get("decoder", {}) if isinstance(model_cfg, dict) else {}

    heads = _first_int(
        dec_cfg.get("num_attention_heads"), config.get("num_attention_heads"), config.get("n_head")
    )
    kv_heads = _first_int(
        dec_cfg.get("num_key_value_heads"), config.get("num_key_value_heads"), heads
    )
    hidden = _first_int(dec_cfg.get("hidden_size"), config.get("hidden_size"), config.get("n_embd"))
    head_dim = _first_int(
        dec_cfg.get("head_size"), config.get("head_dim"), hidden // heads if heads else 0
    )
    contexts = [
        c
        for c in (
            info.context_length,
            model_cfg.get("context_length") if genai else None,
            config.get("max_position_embeddings"),
            config.get("n_positions"),
        )
        if isinstance(c, int) and c > 0
    ]
    if not contexts:
        raise ModelError(
            f"cannot tell the context length of {path}", hint="add context_length to its manifest"
        )
    context = min(contexts)

    first = first_wiring = prefill = None
    names: dict[str, Any] = {}
    share = False
    if genai:
        names = {**dec_cfg.get("inputs", {}), **dec_cfg.get("outputs", {})}
        filename = dec_cfg.get("filename", "model.onnx")
        share = bool(genai.get("search", {}).get("past_present_share_buffer", False))
        main = create_session(path / filename, providers=providers, threads=threads)
        share = share or _marked_shared(main)
        wiring = read_wiring(
            main, kv_heads=kv_heads, head_dim=head_dim, names=names, shared_buffer=share
        )
        layout = "genai"
    else:
        found = next((name for name in CAUSAL_FILES if (path / name).is_file()), None)
        if found is None:
            raise ModelError(
                f"no causal decoder in {path}", hint=f"expected one of {', '.join(CAUSAL_FILES)}"
            )
        filename = found
        if found == "decoder_model.onnx":
            with_past = path / "decoder_with_past_model.onnx"
            first = create_session(path / found, providers=providers, threads=threads)
            first_wiring = read_wiring(first, kv_heads=kv_heads, head_dim=head_dim)
            if with_past.is_file():
                main = create_session(with_past, providers=providers, threads=threads)
                wiring = read_wiring(main, kv_heads=kv_heads, head_dim=head_dim)
                layout = "optimum-split"
            else:  # no cache graph: every step re-reads the whole sequence
                main, wiring, first, first_wiring = first, first_wiring, None, None
                layout = "optimum-nocache"
        else:
            main = create_session(path / found, providers=providers, threads=threads)
            share = _marked_shared(main)
            wiring = read_wiring(main, kv_heads=kv_heads, head_dim=head_dim, shared_buffer=share)
            layout = "optimum-merged" if wiring.cache_branch else "optimum"

    # The int8-GEMM prefill graph of a one-graph layout (genai, optimum's model.onnx or merged
    # decoder). CPU only: int8 GEMMs are what makes it faster there; measured nowhere else.
    on_cpu = list(providers[:1]) == ["CPUExecutionProvider"]
    one_graph = layout in ("genai", "optimum", "optimum-merged")
    if prefill_graph and on_cpu and one_graph and (path / PREFILL_FILE).is_file():
        prefill = create_session(
            path / PREFILL_FILE, providers=providers, threads=threads, spin=False
        )
        other = read_wiring(
            prefill, kv_heads=kv_heads, head_dim=head_dim, names=names, shared_buffer=share
        )
        # its LM head reads the last position only: which rows the main graph's logits cover
        # does not matter for it
        if replace(other, every_logit_up_to=wiring.every_logit_up_to) != wiring:
            raise ModelError(
                f"{path / PREFILL_FILE} does not fit {filename} (its inputs or outputs differ)",
                hint="reinstall the model (`shellfish models pull NAME --force`)",
            )

    eos_ids = (
        _ids(model_cfg.get("eos_token_id"))
        | _ids(config.get("eos_token_id"))
        | _ids(gen_config.get("eos_token_id"))
    )
    if tokenizer is None:
        from shellfish.engine.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(path)
    eos_ids |= set(getattr(tokenizer, "eos_token_ids", None) or ())
    tok_eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(tok_eos, int):
        eos_ids.add(tok_eos)

    info.family = "causal"
    info.layout = info.layout or layout
    info.context_length = context
    info.providers = list(providers)
    info.extra.update(
        {
            "graph_layout": layout,
            "layers": wiring.num_layers,
            "kv_heads": wiring.kv_heads,
            "head_dim": wiring.head_dim,
            "kv_dtype": wiring.kv_dtype,
            "position_ids": wiring.position_ids is not None,
            "shared_kv_buffer": wiring.shared_buffer,
            "prefill_graph": prefill is not None,
        }
    )
    if disk_prefixes is not None and prefill is not None:
        disk_prefixes = disk_prefixes.variant("prefill-graph")
    decoder = Decoder(
        main,
        wiring,
        first=first,
        first_wiring=first_wiring,
        prefill=prefill,
    )
    return CausalRunner(
        info,
        decoder,
        tokenizer,
        eos_ids=eos_ids,
        context_length=context,
        prefix_cache=prefix_cache,
        disk_prefixes=disk_prefixes,
    )
