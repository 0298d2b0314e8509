"""Reproducible inputs: the same token ids for every engine, from a seed.

With a tokenizer, the input is a fixed English text (tokenized, repeated to length) so real
models see language; without one, ids are drawn from a seeded generator, away from the low
special ids. Either way the same (model, length, seed) gives the same ids on every run.
"""

from __future__ import annotations

from pathlib import Path

FIXED_TEXT = (
    "Find every file under the current directory that was modified in the last seven days, "
    "is larger than ten megabytes and is not inside a .git folder, then print their sizes in "
    "human readable form sorted from largest to smallest. Afterwards compress the five largest "
    "into a single tar archive named recent.tar.gz in the home directory, and show how much "
    "space was saved. The quick brown fox jumps over the lazy dog while the shell waits. "
)


def input_ids(
    length: int, *, vocab_size: int, seed: int = 0, tokenizer: str | None = None
) -> list[int]:
    """`length` token ids; deterministic for the same arguments."""
    if length < 1:
        raise ValueError("length must be >= 1")
    if tokenizer and Path(tokenizer).is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tokenizer)
        base = tok.encode(FIXED_TEXT, add_special_tokens=False).ids
        if base:
            # Rotate by the seed so different seeds give different (still fixed) inputs.
            shift = seed % len(base)
            base = base[shift:] + base[:shift]
            repeated = base * (length // len(base) + 1)
            return [int(i) for i in repeated[:length]]
    import numpy as np

    low = min(100, max(vocab_size // 10, 1))
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.integers(low, max(vocab_size - 1, low + 1), size=length)]
