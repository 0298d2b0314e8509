"""Key/value cache state of a causal decoder, and the prefix cache that keeps recent states.

A `KVState` is the attention cache after `length` positions: one tensor per `past_key_values.*`
input, in the order the decoder's wiring lists them. Two storage modes exist because graphs
differ in how they return the cache:

- *growing* (optimum exports, any Attention built from Concat): each step returns new
  `present.*` tensors one position longer; the state holds those OrtValues as they are, so
  feeding them back costs no copy.
- *shared* (onnxruntime-genai graphs with GroupQueryAttention and `past_present_share_buffer`):
  the state owns capacity-sized numpy buffers that are bound as both the past input and the
  present output, so the graph writes the new positions in place.

`PrefixCache` is a small LRU over token prefixes: a new prompt that starts like a cached one
resumes from that state and prefills only the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class KVState:
    """The cache after `length` positions for a batch of `batch` rows."""

    tensors: list[Any]  # OrtValues, one per past input, in wiring order
    length: int
    batch: int
    arrays: list[Any] = field(default_factory=list)  # shared mode: the numpy buffers behind tensors
    capacity: int = 0  # shared mode: positions the buffers hold

    @property
    def shared(self) -> bool:
        return bool(self.arrays)


@dataclass
class CacheEntry:
    tokens: tuple[int, ...]
    kv: list[Any]  # compact per-layer tensors for exactly len(tokens) positions, batch 1
    logits: Any  # float32 (vocab,) logits after the last token
    nbytes: int


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    import numpy as np

    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


class PrefixCache:
    """LRU of decoder states keyed by their token sequence, bounded by entries and bytes.

    `lookup` answers the entry sharing the longest prefix with a prompt. The caller decides how
    much of it to reuse: all of it only when the prompt *is* the entry (then the stored logits
    stand in for the last forward), otherwise at most `len(prompt) - 1` positions so that one
    token is still fed to get fresh logits.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def lookup(self, tokens: Sequence[int]) -> tuple[CacheEntry | None, int]:
        best: CacheEntry | None = None
        best_len = 0
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, tokens)
            if n > best_len:
                best, best_len = entry, n
        if best is None:
            return None, 0
        self._entries.move_to_end(best.tokens)
        return best, best_len

    def put(self, tokens: Sequence[int], kv: list[Any], logits: Any, nbytes: int) -> None:
        if self.max_entries <= 0 or nbytes > self.max_bytes or not tokens:
            return
        key = tuple(int(t) for t in tokens)
        self._entries.pop(key, None)
        # An entry that is a strict prefix of the new one is now redundant (the new one answers
        # every lookup it would, with at least as many reusable positions).
        for old in [k for k in self._entries if len(k) < len(key) and key[: len(k)] == k]:
            del self._entries[old]
        self._entries[key] = CacheEntry(key, kv, logits, nbytes)
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
