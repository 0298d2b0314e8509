"""Sampling functions (pure numpy) and stop-sequence streaming."""

from __future__ import annotations

import numpy as np
import pytest
from generated_models import needs_extra

from shellfish.engine import sampling
from shellfish.engine.stopping import StopStream


def _logits(rng: np.random.Generator, vocab: int = 50) -> np.ndarray:
    return (rng.standard_normal(vocab) * 3).astype(np.float32)


def _nucleus(logits: np.ndarray, p: float) -> set[int]:
    """The reference nucleus: smallest top set whose probability reaches p."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    chosen: set[int] = set()
    mass = 0.0
    for i in order:
        chosen.add(int(i))
        mass += probs[i]
        if mass >= p:
            break
    return chosen


def test_top_k_never_emits_a_masked_token() -> None:
    for seed in range(300):
        rng = np.random.default_rng(seed)
        logits = _logits(rng)
        k = int(rng.integers(1, 10))
        allowed = set(np.argsort(-logits)[:k].tolist())
        token = sampling.sample_next(
            logits, rng=rng, temperature=float(rng.uniform(0.3, 3)), top_k=k
        )
        assert token in allowed


def test_top_p_never_emits_a_masked_token() -> None:
    for seed in range(300):
        rng = np.random.default_rng(seed)
        logits = _logits(rng)
        p = float(rng.uniform(0.05, 0.99))
        allowed = _nucleus(logits, p)
        token = sampling.sample_next(logits, rng=rng, temperature=1.0, top_p=p)
        assert token in allowed


def test_top_k_and_top_p_together() -> None:
    for seed in range(200):
        rng = np.random.default_rng(seed)
        logits = _logits(rng)
        k, p = int(rng.integers(1, 20)), float(rng.uniform(0.1, 0.95))
        top_k = set(np.argsort(-logits)[:k].tolist())
        masked = np.where(np.isin(np.arange(logits.size), list(top_k)), logits, -np.inf)
        allowed = top_k & _nucleus(masked, p)
        token = sampling.sample_next(logits, rng=rng, temperature=1.0, top_k=k, top_p=p)
        assert token in allowed


def test_filters_mask_with_minus_infinity_and_keep_the_best() -> None:
    logits = np.array([1.0, 5.0, 3.0, 3.0, -2.0], dtype=np.float32)
    kept = sampling.top_k_filter(logits, 2)
    assert np.isneginf(kept[[0, 4]]).all() and kept[1] == 5.0
    assert np.isfinite(kept[[2, 3]]).all()  # ties at the k-th value are kept
    assert np.isfinite(sampling.top_p_filter(logits, 1e-6)).sum() == 1  # the top token survives
    assert (
        sampling.top_k_filter(logits, 0) is logits and sampling.top_p_filter(logits, 1.0) is logits
    )


def test_seeded_sampling_is_reproducible() -> None:
    logits = _logits(np.random.default_rng(0), 200)

    def draw(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return [sampling.sample_next(logits, rng=rng, temperature=1.0) for _ in range(30)]

    assert draw(42) == draw(42)
    assert draw(42) != draw(43)


def test_temperature_zero_is_greedy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = _logits(rng)
        assert sampling.sample_next(logits, rng=rng, temperature=0.0) == int(np.argmax(logits))
    with pytest.raises(ValueError):
        sampling.apply_temperature(np.zeros(3, dtype=np.float32), 0.0)


def test_sampling_follows_the_distribution() -> None:
    logits = np.log(np.array([0.7, 0.2, 0.1])).astype(np.float32)
    rng = np.random.default_rng(1)
    counts = (
        np.bincount(
            [sampling.sample_next(logits, rng=rng, temperature=1.0) for _ in range(4000)],
            minlength=3,
        )
        / 4000
    )
    np.testing.assert_allclose(counts, [0.7, 0.2, 0.1], atol=0.03)


def test_repetition_penalty_matches_transformers() -> None:
    torch = needs_extra("torch")
    processor = needs_extra("transformers").RepetitionPenaltyLogitsProcessor

    rng = np.random.default_rng(3)
    logits = _logits(rng, 30)
    previous = [1, 5, 5, 7, 29]
    ours = sampling.apply_repetition_penalty(logits, previous, 1.3)
    theirs = processor(1.3)(torch.tensor([previous]), torch.tensor(logits[None]))[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert sampling.apply_repetition_penalty(logits, previous, 1.0) is logits
    assert np.array_equal(sampling.apply_repetition_penalty(logits, [], 1.3), logits)


def test_log_softmax_and_softmax() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, -np.inf]], dtype=np.float32)
    out = sampling.log_softmax(logits)
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0)
    np.testing.assert_allclose(sampling.softmax(logits[0]), np.exp(out[0]))
    assert np.isneginf(out[1, 2])


# --- stop sequences ---


def _feed_all(stream: StopStream, pieces: list[str]) -> str:
    return "".join(stream.feed(p) for p in pieces) + stream.flush()


def test_stop_split_across_pieces() -> None:
    stream = StopStream(["\n\n"])
    shown = [stream.feed(p) for p in ["ls -la", "\n", "\n", "more"]]
    assert shown == ["ls -la", "", "", ""]
    assert stream.stopped and stream.text == "ls -la" and stream.flush() == ""


def test_partial_stop_is_released_when_it_cannot_match() -> None:
    stream = StopStream(["END"])
    assert stream.feed("abc E") == "abc "
    assert stream.feed("N") == ""
    assert stream.feed("d") == "ENd"
    assert _feed_all(stream, ["!"]) == "!"
    assert not stream.stopped and stream.text == "abc ENd!"


def test_held_back_tail_comes_out_at_flush() -> None:
    stream = StopStream(["</cmd>"])
    assert stream.feed("echo hi </c") == "echo hi "
    assert stream.flush() == "</c"


def test_earliest_of_several_stops_wins() -> None:
    stream = StopStream(["bar", "o b"])
    assert _feed_all(stream, ["fo", "o ba", "r"]) == "fo"
    assert stream.text == "fo"


def test_no_stops_passes_everything_through() -> None:
    stream = StopStream([""])
    assert [stream.feed(p) for p in ["a", "b"]] == ["a", "b"]
    assert StopStream([]).feed("x") == "x"


def test_nothing_after_a_stop() -> None:
    stream = StopStream(["#"])
    assert stream.feed("a#b") == "a"
    assert stream.feed("more") == "" and stream.flush() == ""
