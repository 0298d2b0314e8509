"""Key/value cache state of a causal decoder, and the prefix cache that keeps recent states.

A `KVState` is the attention cache after `length` positions: one tensor per `past_key_values.*`
input, in the order the decoder's wiring lists them. Two storage modes exist because graphs
differ in how they return the cache:

- *growing* (optimum exports, any Attention built from Concat): each step returns new
  `present.*` tensors one position longer; the state holds those OrtValues as they are, so
  feeding them back costs no copy.
- *shared* (onnxruntime-genai graphs with GroupQueryAttention and `past_present_share_buffer`,
  and graphs whose metadata carries `SHARED_BUFFER_MARK`): the state owns capacity-sized numpy
  buffers that are bound as both the past input and the present output, so the graph writes
  the new positions in place.

`PrefixCache` is a small LRU over token prefixes: a new prompt that starts like a cached one
resumes from that state and prefills only the rest. `DiskPrefixes` keeps the system turns of
chat prompts on disk, so a one-shot process starts with the part every suggestion shares.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The metadata entry of a graph whose past and present are one buffer (GPT-2's attention as
#: rewritten by `store/attention.py`).
SHARED_BUFFER_MARK = ("shellfish.kv_buffer", "shared")


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
    logits: Any  # float32 (vocab,) logits after the last token; None: not kept (from disk)
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


class DiskPrefixes:
    """System turns of chat prompts, with their KV cache, in files that outlive the process.

    Every suggestion prompt starts with the same system turn (instruction, OS, shell: no request
    text, no path), which a daemon prefills once and keeps in its `PrefixCache`; a one-shot CLI
    run used to prefill it every time (59 of a median 235 tokens). `save` writes one turn's
    cache once per model (`model_id`, the hashes of its graph files), `load` reads back those of
    this model. A file that does not read back whole - truncated, corrupt, another model's, or
    of another cache geometry - is removed and counts as absent: it is a cache, never an error.
    Writes go to a temporary file renamed into place, and a full disk only means nothing is
    kept. At most `max_files` are kept, the oldest removed first.
    """

    SUFFIX = ".kv.npz"

    def __init__(self, folder: Path, model_id: str, *, max_files: int = 8) -> None:
        self.folder = Path(folder)
        self.model_id = model_id
        self.max_files = max_files
        self._saved: set[tuple[int, ...]] = set()

    def variant(self, name: str) -> DiskPrefixes:
        """The same folder for caches computed another way (e.g. by a model's prefill graph),
        kept apart so that each way reads back only what it would compute itself."""
        return DiskPrefixes(self.folder, f"{self.model_id}:{name}", max_files=self.max_files)

    def _path(self, tokens: Sequence[int]) -> Path:
        import numpy as np

        digest = hashlib.sha256(self.model_id.encode())
        digest.update(np.asarray(tokens, dtype=np.int64).tobytes())
        return self.folder / (digest.hexdigest()[:32] + self.SUFFIX)

    def load(
        self, tensors: int, shape: tuple[int, int], dtype: str
    ) -> list[tuple[tuple[int, ...], list[Any]]]:
        """(tokens, `tensors` arrays [1, kv_heads, len, head_dim]) of this model's files."""
        import numpy as np

        found: list[tuple[tuple[int, ...], list[Any]]] = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*" + self.SUFFIX)):
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["model_id"]) != self.model_id:
                        continue  # another model's: not ours to judge
                    tokens = tuple(int(t) for t in data["tokens"])
                    arrays = [data[f"kv{i}"] for i in range(tensors)]
                if path != self._path(tokens) or not tokens:
                    raise ValueError("name does not match content")
                want = (1, shape[0], len(tokens), shape[1])
                for a in arrays:
                    if a.dtype != np.dtype(dtype) or a.shape != want:
                        raise ValueError(f"cache shape {a.shape} {a.dtype}")
            except Exception:  # a cache: whatever is wrong with the file, drop it
                path.unlink(missing_ok=True)
                continue
            self._saved.add(tokens)
            found.append((tokens, arrays))
        return found

    def save(self, tokens: Sequence[int], arrays: list[Any]) -> bool:
        """Keep one turn's cache; False when it was kept already or could not be written."""
        import numpy as np

        key = tuple(int(t) for t in tokens)
        if not key or key in self._saved:
            return False
        self._saved.add(key)
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                named: dict[str, Any] = {
                    "model_id": np.array(self.model_id),
                    "tokens": np.asarray(key, dtype=np.int64),
                }
                named.update({f"kv{i}": np.ascontiguousarray(a) for i, a in enumerate(arrays)})
                np.savez(f, **named)
            os.replace(tmp, path)
        except OSError:  # a full disk, a read-only cache dir: nothing is kept, nothing breaks
            tmp.unlink(missing_ok=True)
            return False
        self._prune()
        return True

    def _prune(self) -> None:
        try:
            files = sorted(self.folder.glob("*" + self.SUFFIX), key=lambda p: p.stat().st_mtime)
            for old in files[: max(0, len(files) - self.max_files)]:
                old.unlink(missing_ok=True)
        except OSError:
            pass
