"""System turns kept on disk between processes (engine/kvcache.DiskPrefixes): a new runner
starts from the saved turn and answers as the first did; only a system turn is ever written;
a bad file, another model's file or a full disk never breaks a suggestion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shellfish.engine import causal
from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.engine.kvcache import DiskPrefixes

# The tiny fixtures use GPT-2's tokenizer, which has no ChatML tokens: its one special token
# stands for both <|im_start|> and <|im_end|> here (the real ones: test_chatml_marks).
S = "<|endoftext|>"
SYSTEM = f"{S}system\nYou translate a request into one bash command.{S}\n"
PROMPT = SYSTEM + f"{S}user\nlist files{S}\n{S}assistant\n"
OTHER = SYSTEM + f"{S}user\nshow the date{S}\n{S}assistant\n"


def runner(causal_models: Path, layout: str, folder: Path, model_id: str = "m") -> Any:
    info = ModelInfo(layout, "causal", "", str(causal_models / layout), 0)
    run = causal.load(
        causal_models / layout,
        info,
        providers=["CPUExecutionProvider"],
        threads=1,
        disk_prefixes=DiskPrefixes(folder, model_id),
    )
    tok = run.tokenizer
    run._system_turn = (tuple(tok.encode(f"{S}system\n")), tuple(tok.encode(f"{S}\n")))
    return run


def greedy(n: int = 6, keep: bool = True) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, temperature=0.0, stop=[], keep_system_turn=keep)


def answer(run: Any, prompt: str) -> Any:
    return run.generate_ids(run.tokenizer.encode(prompt), greedy())


@pytest.mark.parametrize("layout", ["qwen-genai", "gpt2"])  # shared and growing KV layouts
def test_a_new_runner_starts_from_the_saved_system_turn(
    causal_models: Path, tmp_path: Path, layout: str
) -> None:
    first = runner(causal_models, layout, tmp_path)
    head = first.system_turn_length(first.tokenizer.encode(PROMPT))
    assert 0 < head < len(first.tokenizer.encode(PROMPT))
    a = answer(first, PROMPT)
    assert a.prefix_reused_tokens == 0
    files = list(tmp_path.glob("*.kv.npz"))
    assert len(files) == 1
    with np.load(files[0]) as data:
        assert list(data["tokens"]) == first.tokenizer.encode(PROMPT)[:head]  # the turn only

    second = runner(causal_models, layout, tmp_path)  # another process, in effect
    b = answer(second, OTHER)
    assert b.prefix_reused_tokens == head
    assert b.prefill_tokens == len(second.tokenizer.encode(OTHER)) - head
    fresh = causal.load(
        causal_models / layout,
        ModelInfo(layout, "causal", "", "", 0),
        providers=["CPUExecutionProvider"],
        threads=1,
    )
    assert b.ids == answer(fresh, OTHER).ids  # the same answer as without the file
    assert len(list(tmp_path.glob("*.kv.npz"))) == 1  # nothing new to keep


def test_prompts_without_a_system_turn_write_nothing(causal_models: Path, tmp_path: Path) -> None:
    run = runner(causal_models, "qwen-genai", tmp_path)
    run.generate_ids(run.tokenizer.encode(PROMPT), greedy(keep=False))  # not asked to keep it
    answer(run, f"{S}user\nmy secret request{S}\n{S}assistant\n")
    answer(run, SYSTEM)  # a system turn and nothing after it
    answer(run, "plain text prompt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[:100]),  # truncated
        lambda p: p.write_bytes(b"garbage"),
        lambda p: p.rename(p.with_name("0" * 32 + DiskPrefixes.SUFFIX)),  # name != content
    ],
)
def test_a_damaged_file_is_dropped_and_the_answer_is_unchanged(
    causal_models: Path, tmp_path: Path, damage: Any
) -> None:
    expected = answer(runner(causal_models, "qwen-genai", tmp_path), PROMPT)
    (file,) = tmp_path.glob("*.kv.npz")
    damage(file)
    again = runner(causal_models, "qwen-genai", tmp_path)
    got = answer(again, PROMPT)
    assert got.prefix_reused_tokens == 0 and got.ids == expected.ids
    assert len(list(tmp_path.glob("*.kv.npz"))) == 1  # dropped, then written anew


def test_another_models_file_is_left_alone(causal_models: Path, tmp_path: Path) -> None:
    answer(runner(causal_models, "qwen-genai", tmp_path, model_id="a"), PROMPT)
    got = answer(runner(causal_models, "qwen-genai", tmp_path, model_id="b"), OTHER)
    assert got.prefix_reused_tokens == 0
    assert len(list(tmp_path.glob("*.kv.npz"))) == 2  # each model keeps its own


def test_a_cache_of_another_geometry_is_dropped(causal_models: Path, tmp_path: Path) -> None:
    """The same id on a model whose cache has another shape (a stale file): not fed to it."""
    answer(runner(causal_models, "gpt2", tmp_path, model_id="same"), PROMPT)  # 4 kv heads
    got = answer(runner(causal_models, "qwen-genai", tmp_path, model_id="same"), PROMPT)
    assert got.prefix_reused_tokens == 0


def test_a_full_disk_keeps_nothing_and_breaks_nothing(
    causal_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kw: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    run = runner(causal_models, "qwen-genai", tmp_path)
    assert answer(run, PROMPT).ids
    assert not list(tmp_path.iterdir())  # no temporary file left behind either


def test_old_files_are_pruned(tmp_path: Path) -> None:
    store = DiskPrefixes(tmp_path, "m", max_files=2)
    kv = [np.zeros((1, 2, 3, 4), np.float32)] * 2
    for i in range(4):
        assert store.save([i, i + 1, i + 2], kv)
        os.utime(store._path([i, i + 1, i + 2]), (i, i))  # distinct ages
    assert not store.save([3, 4, 5], kv)  # kept already
    assert len(list(tmp_path.glob("*.kv.npz"))) == 2
    kept = {t for t, _ in DiskPrefixes(tmp_path, "m").load(2, (2, 4), "float32")}
    assert kept == {(2, 3, 4), (3, 4, 5)}  # the two newest


def test_chatml_marks_are_single_special_tokens(causal_models: Path) -> None:
    from tokenizers import Tokenizer

    from shellfish.engine.tokenizer import load_tokenizer

    plain = load_tokenizer(causal_models / "qwen-genai")
    assert causal._system_turn_marks(plain) is None  # GPT-2's BPE: no ChatML specials

    raw = Tokenizer.from_file(str(causal_models / "qwen-genai" / "tokenizer.json"))
    raw.add_special_tokens(["<|im_start|>", "<|im_end|>"])

    class Chat:
        def encode(self, text: str) -> list[int]:
            return list(raw.encode(text, add_special_tokens=False).ids)

    start_id, end_id = raw.token_to_id("<|im_start|>"), raw.token_to_id("<|im_end|>")
    marks = causal._system_turn_marks(Chat())
    assert marks is not None
    start, end = marks
    assert start[0] == start_id and end[0] == end_id and len(end) == 2


def test_the_model_id_follows_the_graph_files(tmp_path: Path) -> None:
    from shellfish.engine.loader import graphs_id

    manifest = {"files": {"model.onnx": "a" * 64, "model.onnx.data": "b" * 64, "x.json": "c"}}
    same = {"files": {**manifest["files"], "x.json": "changed"}}  # not a graph
    other = {"files": {**manifest["files"], "model.onnx.data": "d" * 64}}
    assert graphs_id(tmp_path, manifest) == graphs_id(tmp_path, same)
    assert graphs_id(tmp_path, manifest) != graphs_id(tmp_path, other)
    (tmp_path / "model.onnx").write_bytes(b"x")  # no manifest: sizes and times
    first = graphs_id(tmp_path, {})
    (tmp_path / "model.onnx").write_bytes(b"xy")
    assert graphs_id(tmp_path, {}) != first
