"""A small Okapi BM25 retriever on numpy, with its arrays saved next to the index.

Why our own and not `rank-bm25` or `bm25s`: rank-bm25 scores every document in Python for
every query term (tens of milliseconds at 40k documents) and pickles its state; bm25s pulls in
scipy and its own tokenizer stack. The corpus here is short texts (tldr examples, request /
command pairs, option lines), a few tens of thousands of them, so an inverted index in three
flat numpy arrays (CSR postings: term -> documents with precomputed BM25 term weights) scores
a query with one `np.add.at` per query term in well under a millisecond, loads with one
`np.load`, and costs no dependency beyond numpy. Embedding models would need a second ONNX
model in memory and ~10 ms per query on this CPU for little gain on keyword-heavy shell
requests.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no retrieval signal in shell requests.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "with",
        "from",
        "by",
        "at",
        "as",
        "is",
        "are",
        "be",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "all",
        "any",
        "each",
        "my",
        "your",
        "me",
        "i",
        "you",
        "we",
        "into",
        "which",
        "what",
        "how",
        "do",
        "does",
        "using",
        "use",
        "given",
        "then",
        "than",
        "current",
        "under",
        "s",
        "t",
    ]
)


def _stem(word: str) -> str:
    """A deliberately tiny suffix stripper (files -> file, listing -> list, sorted -> sort)."""
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def tokenize(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


class BM25:
    """Okapi BM25 (k1, b) over pre-tokenized documents; `search` returns (doc index, score)."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.vocab: dict[str, int] = {}
        self.n_docs = 0
        self.indptr: np.ndarray | None = None
        self.doc_ids: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def fit(self, documents: list[list[str]]) -> BM25:
        import numpy as np

        self.n_docs = len(documents)
        lengths = np.array([len(d) for d in documents], dtype=np.float32)
        avg = float(lengths.mean()) if len(lengths) and lengths.mean() > 0 else 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for i, doc in enumerate(documents):
            for term, tf in Counter(doc).items():
                postings.setdefault(term, []).append((i, tf))
        self.vocab = {term: j for j, term in enumerate(sorted(postings))}
        indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        doc_ids: list[int] = []
        weights: list[float] = []
        for term, j in self.vocab.items():
            plist = postings[term]
            df = len(plist)
            idf = np.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))
            for i, tf in plist:
                norm = tf + self.k1 * (1 - self.b + self.b * lengths[i] / avg)
                doc_ids.append(i)
                weights.append(float(idf * tf * (self.k1 + 1) / norm))
            indptr[j + 1] = len(doc_ids)
        self.indptr = indptr
        self.doc_ids = np.asarray(doc_ids, dtype=np.int32)
        self.weights = np.asarray(weights, dtype=np.float32)
        return self

    def scores(self, query: list[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros(self.n_docs, dtype=np.float32)
        if self.indptr is None or self.doc_ids is None or self.weights is None:
            return out
        # In the query's order, not a set's: float32 sums in another order differ in the last
        # bit, and a set's order changes with each process's string hashing - the same request
        # retrieved other examples among near-ties from one run to the next.
        for term in dict.fromkeys(query):
            j = self.vocab.get(term)
            if j is None:
                continue
            lo, hi = self.indptr[j], self.indptr[j + 1]
            np.add.at(out, self.doc_ids[lo:hi], self.weights[lo:hi])
        return out

    def search(
        self, query: list[str], k: int = 10, mask: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        import numpy as np

        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        if k <= 0 or not len(scores):
            return []
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def save(self, path: Path) -> None:
        import numpy as np

        assert self.indptr is not None and self.doc_ids is not None and self.weights is not None
        np.savez(
            path.with_suffix(".npz"), indptr=self.indptr, doc_ids=self.doc_ids, weights=self.weights
        )
        meta = {"k1": self.k1, "b": self.b, "n_docs": self.n_docs, "vocab": list(self.vocab)}
        path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> BM25:
        import numpy as np

        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        out = cls(k1=float(meta["k1"]), b=float(meta["b"]))
        out.n_docs = int(meta["n_docs"])
        out.vocab = {t: j for j, t in enumerate(meta["vocab"])}
        with np.load(path.with_suffix(".npz")) as arrays:
            out.indptr = arrays["indptr"]
            out.doc_ids = arrays["doc_ids"]
            out.weights = arrays["weights"]
        return out
