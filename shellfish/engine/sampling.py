"""Sampling as pure numpy functions over a 1-D logits vector (float32, one row per call).

Each function returns a new array; nothing here keeps state except the caller's Generator.
Masked positions are set to -inf so they can never be drawn.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NEG_INF = np.float32(-np.inf)


def apply_repetition_penalty(
    logits: np.ndarray, previous: Iterable[int], penalty: float
) -> np.ndarray:
    """CTRL-style penalty (as transformers does): divide positive logits, multiply negative ones."""
    if penalty == 1.0:
        return logits
    ids = np.unique(np.fromiter(previous, dtype=np.int64))
    if ids.size == 0:
        return logits
    out = logits.copy()
    picked = out[ids]
    out[ids] = np.where(picked > 0, picked / penalty, picked * penalty)
    return out


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    if temperature <= 0:
        raise ValueError("temperature must be > 0 for sampling; use greedy for 0")
    return logits / np.float32(temperature)


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits (ties at the k-th value are kept too)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k)[-k]
    return np.where(logits < kth, NEG_INF, logits)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filtering: keep the smallest set of tokens whose probability mass reaches p."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, kind="stable")
    probs = softmax(logits[order])
    cumulative = np.cumsum(probs)
    # Keep a token if the mass *before* it is still below p, so the top token always survives.
    keep_sorted = (cumulative - probs) < p
    keep = np.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return np.where(keep, logits, NEG_INF)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits)
    exp = np.exp(shifted, dtype=np.float64)
    return (exp / exp.sum()).astype(np.float64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (beam scores accumulate these)."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def greedy(logits: np.ndarray) -> int:
    return int(np.argmax(logits))


def sample_next(
    logits: np.ndarray,
    *,
    rng: np.random.Generator,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    previous: Iterable[int] = (),
) -> int:
    """Pick the next token id: penalty, then greedy or temperature -> top-k -> top-p -> draw."""
    logits = np.asarray(logits, dtype=np.float32)
    logits = apply_repetition_penalty(logits, previous, repetition_penalty)
    if temperature <= 0:
        return greedy(logits)
    logits = apply_temperature(logits, temperature)
    logits = top_k_filter(logits, top_k)
    logits = top_p_filter(logits, top_p)
    probs = softmax(logits)
    return int(rng.choice(probs.shape[-1], p=probs))
