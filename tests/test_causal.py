"""The causal runner on real (tiny, random) ONNX exports: parity, cache invariants, bad input."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from generated_models import needs_extra

from shellfish.engine import causal
from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.engine.kvcache import PrefixCache, common_prefix
from shellfish.errors import ModelError, PromptTooLong, ShellfishError, UsageError
from shellfish.events import Done, Token

ONNX_LAYOUTS = ["gpt2", "gpt2-split", "gpt2-merged", "qwen-optimum", "qwen-genai"]
HF_FOR = {"gpt2": "gpt2-hf", "gpt2-split": "gpt2-hf", "gpt2-merged": "gpt2-hf"}
PROMPT = "list all files in the current directory sorted by size"

_runners: dict[tuple[str, str], causal.CausalRunner] = {}
_hf: dict[str, Any] = {}


def runner_for(root: Path, name: str, **kw: Any) -> causal.CausalRunner:
    if kw:
        info = ModelInfo(name, "causal", "", str(root / name), 0)
        return causal.load(root / name, info, providers=["CPUExecutionProvider"], threads=1, **kw)
    key = (str(root), name)
    if key not in _runners:
        info = ModelInfo(name, "causal", "", str(root / name), 0)
        _runners[key] = causal.load(
            root / name, info, providers=["CPUExecutionProvider"], threads=1
        )
    runner = _runners[key]
    runner.prefix_cache.clear()
    return runner


def hf_model(root: Path, layout: str) -> Any:
    name = HF_FOR.get(layout, "qwen-hf")
    if name not in _hf:
        transformers = needs_extra("transformers")
        _hf[name] = transformers.AutoModelForCausalLM.from_pretrained(root / name).eval()
    return _hf[name]


def hf_greedy(model: Any, ids: list[int], new: int) -> list[int]:
    torch = needs_extra("torch")

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0, len(ids) :].tolist()  # type: ignore[no-any-return]


def greedy(new: int = 16, **kw: Any) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=new, **kw)


# ---- parity with the reference implementations -------------------------------------------


@pytest.mark.parametrize("layout", ONNX_LAYOUTS)
def test_greedy_tokens_equal_transformers_generate(causal_models: Path, layout: str) -> None:
    runner = runner_for(causal_models, layout)
    ids = runner.tokenizer.encode(PROMPT)
    ref = hf_greedy(hf_model(causal_models, layout), ids, 16)
    got = runner.generate_ids(ids, greedy(16), use_prefix_cache=False)
    assert got.ids[0] == ref
    assert len(set(ref)) > 3  # the fixture's greedy path is not one repeated token


@pytest.mark.parametrize("layout", ONNX_LAYOUTS)
def test_step_logits_match_transformers(causal_models: Path, layout: str) -> None:
    torch = needs_extra("torch")

    runner = runner_for(causal_models, layout)
    ids = runner.tokenizer.encode(PROMPT)
    got = runner.generate_ids(ids, greedy(8), use_prefix_cache=False, keep_logits=True)
    seq = ids + got.ids[0]
    with torch.no_grad():
        ref = hf_model(causal_models, layout)(torch.tensor([seq])).logits[0].numpy()
    assert len(got.step_logits) == 8
    for step, logits in enumerate(got.step_logits):
        np.testing.assert_allclose(logits, ref[len(ids) - 1 + step], atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ONNX_LAYOUTS)
def test_with_and_without_kv_cache_identical(causal_models: Path, layout: str) -> None:
    runner = runner_for(causal_models, layout)
    ids = runner.tokenizer.encode(PROMPT)
    cached = runner.generate_ids(ids, greedy(12), use_prefix_cache=False)
    plain = runner.generate_ids(ids, greedy(12), use_cache=False, use_prefix_cache=False)
    assert cached.ids == plain.ids
    # and the full-sequence forward agrees with the cached logits
    full, _ = runner.forward(ids + cached.ids[0][:-1])
    assert int(full[0, -1].argmax()) == cached.ids[0][-1]


@pytest.mark.parametrize("layout", ["qwen-genai", "qwen-genai-int4", "qwen-genai-short"])
@pytest.mark.parametrize("prompt", [PROMPT, "list files"])
def test_genai_layout_equals_onnxruntime_genai_generator(
    causal_models: Path, layout: str, prompt: str
) -> None:
    """Also on a graph changed by shellfish's converter (short_pass_logits): a prompt of a few
    tokens then gets a row of logits per token, which onnxruntime-genai must read right."""
    og = needs_extra("onnxruntime_genai")
    runner = runner_for(causal_models, layout)
    ids = runner.tokenizer.encode(prompt)
    new = 16
    model = og.Model(str(causal_models / layout))
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + new)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    ref: list[int] = []
    while not generator.is_done() and len(ref) < new:
        generator.generate_next_token()
        ref.append(int(generator.get_next_tokens()[0]))
    got = runner.generate_ids(ids, greedy(new), use_prefix_cache=False)
    assert got.ids[0] == ref
    assert runner.info.extra["shared_kv_buffer"] is True


def test_int4_graph_runs_and_differs_from_fp32(causal_models: Path) -> None:
    fp32 = runner_for(causal_models, "qwen-genai")
    int4 = runner_for(causal_models, "qwen-genai-int4")
    ids = fp32.tokenizer.encode(PROMPT)
    a, _ = fp32.forward(ids)
    b, _ = int4.forward(ids)
    assert a.shape == b.shape
    assert 0 < np.abs(a - b).max() < 10 * np.abs(a).max()  # quantized, yet the same model


# ---- wiring ------------------------------------------------------------------------------


def test_wiring_is_read_from_the_graphs(causal_models: Path) -> None:
    gpt2 = runner_for(causal_models, "gpt2").decoder.wiring
    qwen = runner_for(causal_models, "qwen-optimum").decoder.wiring
    genai = runner_for(causal_models, "qwen-genai").decoder.wiring
    merged = runner_for(causal_models, "gpt2-merged").decoder.wiring
    assert gpt2.position_ids is None  # GPT-2's graph derives positions itself
    assert qwen.position_ids == "position_ids"
    assert genai.position_ids is None
    assert (gpt2.num_layers, gpt2.kv_heads, gpt2.head_dim) == (2, 4, 16)
    assert (qwen.kv_heads, genai.kv_heads, genai.head_dim) == (2, 2, 16)  # grouped-query
    assert merged.cache_branch == "use_cache_branch" and gpt2.cache_branch is None
    assert genai.shared_buffer and not qwen.shared_buffer
    assert gpt2.past[:2] == ("past_key_values.0.key", "past_key_values.0.value")


def test_position_ids_fed_only_when_the_graph_has_them(causal_models: Path) -> None:
    """Binding an input the graph lacks is an error in onnxruntime, so a run proves both."""
    for layout in ("gpt2", "qwen-optimum"):
        runner = runner_for(causal_models, layout)
        fed: list[str] = []
        binding = runner.decoder._bind_main

        class Spy:
            def __init__(self, inner: Any, fed: list[str]) -> None:
                self.inner, self.fed = inner, fed

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def bind_cpu_input(self, name: str, value: Any) -> None:
                self.fed.append(name)
                self.inner.bind_cpu_input(name, value)

        runner.decoder._bind_main = Spy(binding, fed)
        try:
            runner.forward([1, 2, 3])
        finally:
            runner.decoder._bind_main = binding
        assert ("position_ids" in fed) == (layout == "qwen-optimum")


# ---- sampling, n, stop, eos, cancel --------------------------------------------------------


def test_seeded_sampling_is_reproducible(causal_models: Path) -> None:
    runner = runner_for(causal_models, "qwen-genai")
    ids = runner.tokenizer.encode(PROMPT)
    cfg = GenerationConfig(max_new_tokens=12, temperature=1.5, top_k=50, top_p=0.95, seed=7, n=3)
    a = runner.generate_ids(ids, cfg, use_prefix_cache=False)
    b = runner.generate_ids(ids, cfg, use_prefix_cache=False)
    c = runner.generate_ids(ids, cfg.merged(seed=8), use_prefix_cache=False)
    assert a.ids == b.ids
    assert a.ids != c.ids
    assert len({tuple(row) for row in a.ids}) > 1  # the n samples are independent draws


def test_n_greedy_samples_equal_single_greedy(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    ids = runner.tokenizer.encode(PROMPT)
    one = runner.generate_ids(ids, greedy(10), use_prefix_cache=False)
    three = runner.generate_ids(ids, greedy(10, n=3), use_prefix_cache=False)
    assert three.ids == one.ids * 3


@pytest.mark.parametrize("layout", ["gpt2", "qwen-genai"])
def test_rows_stay_exact_while_the_mask_and_position_buffers_grow(
    causal_models: Path, layout: str
) -> None:
    """Masks and position ids are views of reused buffers that grow mid-generation (3 rows x
    100+ positions pass the first 256 ones); every row must still equal the one-row greedy
    path, and the no-cache path."""
    runner = runner_for(causal_models, layout)
    decoder = runner.decoder
    decoder._ones.clear()
    decoder._positions = np.arange(0, dtype=np.int64)
    ids = runner.tokenizer.encode(PROMPT)
    new = 100 - len(ids)
    one = runner.generate_ids(ids, greedy(new), use_prefix_cache=False)
    plain = runner.generate_ids(ids, greedy(new), use_cache=False, use_prefix_cache=False)
    three = runner.generate_ids(ids, greedy(new, n=3), use_prefix_cache=False)
    assert three.ids == one.ids * 3 and plain.ids == one.ids
    assert max(b.size for b in decoder._ones.values()) >= 3 * 99
    mask = decoder._mask("int64", 2, 5)
    assert mask.shape == (2, 5) and mask.flags.c_contiguous and (mask == 1).all()


# ---- prompt lookup -------------------------------------------------------------------------


def test_lookup_guess_follows_the_latest_longest_match() -> None:
    #            0  1  2  3  4  5  6  7  8  9
    sequence = [5, 6, 7, 8, 9, 6, 7, 1, 2, 6, 7]
    # the last 3 tokens (2 6 7) never occurred before; the last 2 (6 7) did, latest at 5
    assert causal.lookup_guess(sequence, 2) == [1, 2]
    assert causal.lookup_guess(sequence, 9) == [1, 2, 6, 7]  # never past the sequence's end
    assert causal.lookup_guess([5, 6, 7, 8, 6], 3) == []  # one token is too weak a match ...
    assert causal.lookup_guess([5, 6, 7, 8, 6], 3, min_ngram=1) == [7, 8, 6]  # ... by default
    assert causal.lookup_guess([1, 2, 3], 4) == []
    assert causal.lookup_guess([4, 4], 0) == []


def oracle(
    monkeypatch: pytest.MonkeyPatch, prompt_len: int, truth: list[int], right: int
) -> list[int]:
    """Make prompt lookup guess `right` true next tokens then a wrong one, every other pass
    (and nothing in between); returns the list of guess lengths made."""
    made: list[int] = []

    def guess(sequence: Any, k: int, max_ngram: int = 3, min_ngram: int = 2) -> list[int]:
        at = len(sequence) - prompt_len
        if len(made) % 2 or k <= 0:
            made.append(0)
            return []
        out = truth[at : at + min(right, k)]
        if len(out) < k and at + len(out) < len(truth):
            out.append(truth[at + len(out)] + 1)  # a wrong guess after the right ones
        made.append(len(out))
        return out

    monkeypatch.setattr(causal, "lookup_guess", guess)
    return made


@pytest.mark.parametrize("layout", [*ONNX_LAYOUTS, "qwen-genai-short"])
@pytest.mark.parametrize("right", [0, 2, 5])
def test_prompt_lookup_gives_the_greedy_tokens_in_fewer_passes(
    causal_models: Path, layout: str, right: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = runner_for(causal_models, layout)
    ids = runner.tokenizer.encode(PROMPT)
    plain = runner.generate_ids(ids, greedy(24), use_prefix_cache=False, keep_logits=True)
    made = oracle(monkeypatch, len(ids), plain.ids[0], right)
    got = runner.generate_ids(
        ids, greedy(24, prompt_lookup=6), use_prefix_cache=False, keep_logits=True
    )
    assert got.ids == plain.ids
    for a, b in zip(got.step_logits, plain.step_logits, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    assert sum(made) > 0
    # each guessing pass saves `right` passes (fewer near the end, where guesses are cut)
    if right:
        assert len(made) < 23
    else:
        assert len(made) == 23


@pytest.mark.parametrize("layout", ["gpt2", "qwen-genai"])
def test_prompt_lookup_leaves_a_true_prefix_cache_and_reports_its_guesses(
    causal_models: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = runner_for(causal_models, layout)
    tok = runner.tokenizer
    ids = tok.encode(PROMPT)
    truth = runner.generate_ids(ids, greedy(20), use_prefix_cache=False).ids[0]
    oracle(monkeypatch, len(ids), truth, 3)
    cfg = greedy(20, prompt_lookup=6)
    first = runner.generate_ids(ids, cfg)  # ends with unchecked guesses in the cache's state
    assert first.ids[0] == truth
    follow = ids + truth + tok.encode(" and then sort them")
    again = runner.generate_ids(follow, greedy(12))
    assert again.prefix_reused_tokens == len(ids) + len(truth) - 1
    assert again.ids == runner.generate_ids(follow, greedy(12), use_prefix_cache=False).ids
    done = list(runner.generate(PROMPT, greedy(20, prompt_lookup=6)))[-1]
    assert isinstance(done, Done)
    assert done.extra["lookup_guessed"] >= done.extra["lookup_accepted"] > 0
    assert done.extra["decode_passes"] + done.extra["lookup_accepted"] == done.completion_tokens - 1


def test_short_passes_of_a_pruned_head_give_every_row(causal_models: Path) -> None:
    """The converter's graph change: a pass of up to 9 tokens after cached positions gets
    logits at each position (equal to the unpruned graph's); a prefill and a longer pass the
    last row only, as the builder made it."""
    short = runner_for(causal_models, "qwen-genai-short")
    full = runner_for(causal_models, "qwen-genai")
    pruned = runner_for(causal_models, "qwen-genai-pruned")
    assert short.decoder.most_guesses == 8
    assert pruned.decoder.most_guesses == 0  # pruned, not changed: prompt lookup stays off
    assert full.decoder.most_guesses == 64
    prefix = list(range(40, 52))
    _, cached = short.forward(prefix)
    _, cached_ref = full.forward(prefix)
    for n in (2, 9, 10, 30):
        ids = list(range(5, 5 + n))
        got, _ = short.forward(ids)  # a prefill
        ref, _ = full.forward(ids)
        assert got.shape[1] == 1
        np.testing.assert_allclose(got[0], ref[0, -1:], atol=1e-4, rtol=0)
        state = short.decoder.restore(short.decoder.export(cached, 12), 12, 64)
        state_ref = full.decoder.restore(full.decoder.export(cached_ref, 12), 12, 64)
        got, _ = short.forward(ids, state)  # after the cache
        ref, _ = full.forward(ids, state_ref)
        assert got.shape[1] == (n if n <= 9 else 1)
        np.testing.assert_allclose(got[0], ref[0, -got.shape[1] :], atol=1e-4, rtol=0)
    ids = short.tokenizer.encode(PROMPT)
    plain = pruned.generate_ids(ids, greedy(12), use_prefix_cache=False)
    lookup = pruned.generate_ids(ids, greedy(12, prompt_lookup=4), use_prefix_cache=False)
    assert lookup.ids == plain.ids
    assert short.generate_ids(ids, greedy(12), use_prefix_cache=False).ids == plain.ids


def test_short_pass_change_applies_once_and_only_to_a_pruned_head(
    causal_models: Path, tmp_path: Path
) -> None:
    needs_extra("onnx")
    import shutil

    from shellfish.store.convert_worker import short_pass_logits

    for name, changes in (("qwen-genai", False), ("qwen-genai-pruned", True)):
        copy = tmp_path / name
        shutil.copytree(causal_models / name, copy)
        assert short_pass_logits(copy / "model.onnx") is changes
        assert short_pass_logits(copy / "model.onnx") is False  # done already / nothing to do
    assert short_pass_logits(tmp_path / "nothing" / "model.onnx") is False


def test_prompt_lookup_is_off_when_sampling(
    causal_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = runner_for(causal_models, "gpt2")
    ids = runner.tokenizer.encode(PROMPT)
    made = oracle(monkeypatch, len(ids), [1] * 30, 3)
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.8, seed=1, prompt_lookup=4)
    assert (
        runner.generate_ids(ids, cfg).ids
        == runner.generate_ids(ids, cfg.merged(prompt_lookup=0)).ids
    )
    assert made == []


def test_repetition_penalty_changes_greedy_path(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    ids = runner.tokenizer.encode(PROMPT)
    ref = hf_model(causal_models, "gpt2")
    import torch

    with torch.no_grad():
        want = ref.generate(
            torch.tensor([ids]),
            max_new_tokens=12,
            do_sample=False,
            repetition_penalty=1.3,
            pad_token_id=0,
        )[0, len(ids) :].tolist()
    got = runner.generate_ids(ids, greedy(12, repetition_penalty=1.3), use_prefix_cache=False)
    assert got.ids[0] == want


def test_stream_events_text_and_done(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    events = list(runner.generate(PROMPT, greedy(12)))
    done = events[-1]
    assert isinstance(done, Done) and all(isinstance(e, Token) for e in events[:-1])
    ids = runner.tokenizer.encode(PROMPT)
    want = runner.generate_ids(ids, greedy(12), use_prefix_cache=False).ids[0]
    assert done.texts[0] == runner.tokenizer.decode(want)
    assert "".join(e.text for e in events[:-1]) == done.texts[0]
    assert done.finish_reason == "length" and done.completion_tokens == 12
    assert done.prompt_tokens == len(ids)
    assert 0 < done.prefill_ms <= done.first_token_ms <= done.total_ms
    assert done.extra["prefill_tokens"] + done.extra["prefix_reused_tokens"] == len(ids)


def test_done_reports_the_mean_log_probability_of_each_sample(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    ids = runner.tokenizer.encode(PROMPT)
    ref = runner.generate_ids(ids, greedy(12), use_prefix_cache=False, keep_logits=True)
    want = np.mean(
        [
            step[tok] - np.log(np.exp(step - step.max()).sum()) - step.max()
            for step, tok in zip(ref.step_logits, ref.ids[0], strict=True)
        ]
    )
    plain = list(runner.generate(PROMPT, greedy(12)))[-1]
    assert isinstance(plain, Done) and "mean_logprobs" not in plain.extra  # only when asked
    done = list(runner.generate(PROMPT, greedy(12, logprobs=True)))[-1]
    assert isinstance(done, Done)
    assert done.texts == plain.texts
    assert done.extra["mean_logprobs"][0] == pytest.approx(want, abs=1e-3)
    assert done.extra["mean_logprobs"][0] < 0
    # sampled rows are judged by the untempered model, one value per sample
    sampled = list(runner.generate(PROMPT, greedy(6, n=3, temperature=1.5, seed=1, logprobs=True)))[
        -1
    ]
    assert isinstance(sampled, Done)
    assert len(sampled.extra["mean_logprobs"]) == 3
    assert all(v is not None and v < 0 for v in sampled.extra["mean_logprobs"])


def test_stop_sequence_cuts_text(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    full = list(runner.generate(PROMPT, greedy(16)))[-1].texts[0]
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop
    done = list(runner.generate(PROMPT, greedy(16, stop=(stop,))))[-1]
    assert done.texts[0] == full[: full.index(stop)]
    assert done.finish_reason == "stop" and done.completion_tokens < 16


def test_every_eos_id_ends_generation(causal_models: Path) -> None:
    runner = runner_for(causal_models, "qwen-optimum")
    assert runner.tokenizer.eos_token_ids <= runner.eos_ids
    ids = runner.tokenizer.encode(PROMPT)
    path = runner.generate_ids(ids, greedy(10), use_prefix_cache=False).ids[0]
    saved = set(runner.eos_ids)
    runner.eos_ids = saved | {path[4]}  # pretend the 5th greedy token is a second EOS id
    try:
        got = runner.generate_ids(ids, greedy(10), use_prefix_cache=False)
        done = list(runner.generate(PROMPT, greedy(10)))[-1]
    finally:
        runner.eos_ids = saved
    assert got.ids[0] == path[:5] and got.finish_reasons == ["stop"]
    assert done.finish_reason == "stop" and done.completion_tokens == 4


def test_cancel_is_checked_every_step(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    cancel = threading.Event()
    events = []
    for event in runner.generate(PROMPT, greedy(50), cancel=cancel):
        events.append(event)
        if isinstance(event, Token):
            cancel.set()
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "cancelled"
    assert done.completion_tokens <= 3


# ---- prefix cache ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["gpt2", "qwen-optimum", "qwen-genai", "gpt2-split"])
def test_prefix_cache_is_token_identical_and_counts_reuse(causal_models: Path, layout: str) -> None:
    runner = runner_for(causal_models, layout)
    tok = runner.tokenizer
    base = tok.encode("You are a shell expert. Answer with one command.\nRequest: ")
    first = base + tok.encode("list files")
    cfg = greedy(8)
    a = runner.generate_ids(first, cfg)
    assert a.prefix_reused_tokens == 0 and a.prefill_tokens == len(first)
    # a second request sharing the system prefix
    second = base + tok.encode("count lines in a file")
    b = runner.generate_ids(second, cfg)
    shared = common_prefix(first, second)
    assert shared >= len(base)
    assert b.prefix_reused_tokens == shared and b.prefill_tokens == len(second) - shared
    assert b.ids == runner.generate_ids(second, cfg, use_prefix_cache=False).ids
    # the same prompt again: everything but the last token comes from the cache
    c = runner.generate_ids(second, cfg)
    assert c.prefix_reused_tokens == len(second) - 1 and c.prefill_tokens == 1
    assert c.ids == b.ids
    # a follow-up that extends prompt + answer reuses the answer's positions too
    follow = second + b.ids[0] + tok.encode(" and then sort them")
    d = runner.generate_ids(follow, cfg)
    assert d.prefix_reused_tokens == len(second) + len(b.ids[0]) - 1
    assert d.ids == runner.generate_ids(follow, cfg, use_prefix_cache=False).ids


def test_prefix_cache_is_bounded() -> None:
    cache = PrefixCache(max_entries=2, max_bytes=100)
    cache.put([1, 2, 3], [], np.zeros(3), 10)
    cache.put([4, 5], [], np.zeros(3), 10)
    cache.put([6], [], np.zeros(3), 10)
    assert len(cache) == 2 and cache.lookup([1, 2, 3])[0] is None
    cache.put([7, 8], [], np.zeros(3), 95)  # over the byte budget with the others: they go
    assert len(cache) == 1 and cache.nbytes == 95
    cache.put([9], [], np.zeros(3), 1000)  # bigger than the whole budget: never kept
    assert cache.lookup([9])[0] is None
    entry, n = cache.lookup([7, 8, 9])
    assert entry is not None and n == 2


def test_done_reports_prefix_reuse(causal_models: Path) -> None:
    runner = runner_for(causal_models, "qwen-genai")
    list(runner.generate(PROMPT, greedy(4)))
    done = list(runner.generate(PROMPT + " please", greedy(4)))[-1]
    assert isinstance(done, Done)
    n = len(runner.tokenizer.encode(PROMPT))
    assert done.extra["prefix_reused_tokens"] >= n - 1
    assert done.extra["prefill_tokens"] == done.prompt_tokens - done.extra["prefix_reused_tokens"]


# ---- bad inputs --------------------------------------------------------------------------


def test_empty_prompt_is_a_usage_error(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    with pytest.raises(UsageError):
        list(runner.generate("", greedy()))
    with pytest.raises(UsageError):
        runner.generate_ids([], greedy())


def test_too_long_prompt_is_prompt_too_long(causal_models: Path) -> None:
    runner = runner_for(causal_models, "qwen-genai")
    assert runner.context_length == 256
    with pytest.raises(PromptTooLong) as info:
        list(runner.generate("word " * 400, greedy()))
    assert "256" in str(info.value)
    # a prompt that fits but leaves less room than asked: generation stops at the context
    ids = list(range(100, 100 + 250))
    got = runner.generate_ids(ids, greedy(50), use_prefix_cache=False)
    assert len(got.ids[0]) == 6 and got.finish_reasons == ["length"]


def test_context_from_model_info_caps_the_config(causal_models: Path) -> None:
    info = ModelInfo("gpt2", "causal", "", "", context_length=32)
    runner = causal.load(
        causal_models / "gpt2", info, providers=["CPUExecutionProvider"], threads=1
    )
    assert runner.context_length == 32
    with pytest.raises(PromptTooLong):
        runner.generate_ids(list(range(40)), greedy())


def test_bad_generation_config_is_a_usage_error(causal_models: Path) -> None:
    runner = runner_for(causal_models, "gpt2")
    with pytest.raises(UsageError):
        list(runner.generate(PROMPT, GenerationConfig(max_new_tokens=0)))


def test_truncated_onnx_is_a_model_error(causal_models: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (causal_models / "gpt2").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    data = (broken / "model.onnx").read_bytes()
    (broken / "model.onnx").write_bytes(data[: len(data) // 3])
    info = ModelInfo("broken", "causal", "", str(broken), 0)
    with pytest.raises(ModelError) as err:
        causal.load(broken, info, providers=["CPUExecutionProvider"], threads=1)
    assert "model.onnx" in str(err.value)
    assert isinstance(err.value, ShellfishError)


def test_missing_genai_model_file_is_a_model_error(causal_models: Path, tmp_path: Path) -> None:
    broken = tmp_path / "genai"
    broken.mkdir()
    for name in ("genai_config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((causal_models / "qwen-genai" / name).read_bytes())
    with pytest.raises(ModelError, match=r"model\.onnx"):
        causal.load(
            broken,
            ModelInfo("x", "causal", "", "", 0),
            providers=["CPUExecutionProvider"],
            threads=1,
        )


@pytest.mark.parametrize("layout", ONNX_LAYOUTS)
def test_a_cached_prefix_survives_other_requests(causal_models: Path, layout: str) -> None:
    """A prefix-cache entry is the state it was stored as, whatever ran on the model since:
    a request sharing it after two others gets the tokens a cold run gets."""
    runner = runner_for(causal_models, layout, prefill_graph=False)
    runner.prefix_cache.clear()
    tok = runner.tokenizer
    first = tok.encode(PROMPT)
    other = tok.encode("show disk usage of every folder here, largest first please")
    want = runner.generate_ids([*first, 5, 6], greedy(8), use_prefix_cache=False).ids
    runner.generate_ids(first, greedy(8))
    runner.generate_ids(other, greedy(8))
    runner.generate_ids([*other, 7], greedy(8))
    got = runner.generate_ids([*first, 5, 6], greedy(8))
    assert got.prefix_reused_tokens >= len(first)
    assert got.ids == want


def test_a_state_from_forward_can_be_used_twice(causal_models: Path) -> None:
    """`CausalRunner.forward`'s state stays what it was after later passes (growing layout)."""
    runner = runner_for(causal_models, "gpt2")
    _, state = runner.forward([5, 6, 7, 8])
    first, _ = runner.forward([9], state)
    runner.forward([10, 11], state)
    again, _ = runner.forward([9], state)
    np.testing.assert_array_equal(first, again)
