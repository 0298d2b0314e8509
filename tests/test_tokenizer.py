"""Tokenizers: exact ids against transformers, streaming detokenization, special ids, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from generated_models import needs_extra, shared_tokenizer

from shellfish.engine.tokenizer import REPLACEMENT_CHAR, Tokenizer, load_tokenizer
from shellfish.errors import ModelError

ENGLISH = [
    "Hello world!",
    "translate English to German: The house is wonderful.",
    "find . -name '*.py' -size +1M | xargs wc -l",
    "list files modified in the last 2 days, sorted by size",
    "café naïve résumé",
]
MULTIBYTE = [
    "emoji 😀 and 🐚 shellfish 🦀!",
    "日本語のテキスト and 中文 mixed",
    "accents: àéîõü ÀÉÎÕÜ ç ñ ß",
    " leading space and\nnew lines\n\n  indented",
    "tabs\tand   runs   of spaces",
    "👩‍👩‍👧 family, 🇫🇷 flag",
]


def _copy(src: Path, dest: Path, names: tuple[str, ...]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / name, dest / name)
    return dest


def _reference(kind: str, path: Path) -> Any:
    transformers = needs_extra("transformers")
    cls = transformers.T5TokenizerFast if kind == "t5" else transformers.GPT2TokenizerFast
    return cls(tokenizer_file=str(path / "tokenizer.json"))


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_encode_matches_transformers(kind: str) -> None:
    path = shared_tokenizer(kind)
    ours = load_tokenizer(path)
    theirs = _reference(kind, path)
    for text in ENGLISH + MULTIBYTE:
        ids = ours.encode(text)
        assert ids == theirs(text).input_ids, text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
    assert ours.eos_token_id == theirs.eos_token_id


def test_t5_appends_eos_like_transformers() -> None:
    t5 = load_tokenizer(shared_tokenizer("t5"))
    ids = t5.encode("Hello world!")
    assert ids[-1] == 1 == t5.eos_token_id
    assert t5.encode("Hello world!", add_special_tokens=False) == ids[:-1]
    assert (t5.pad_token_id, t5.unk_token_id, t5.bos_token_id) == (0, 2, None)
    assert t5.vocab_size == 32100 and t5.token_to_id("<extra_id_0>") == 32099
    assert {0, 1, 2, 32099} <= set(t5.all_special_ids)
    assert t5.decode(ids, skip_special_tokens=False).endswith("</s>")


def test_gpt2_special_ids() -> None:
    gpt2 = load_tokenizer(shared_tokenizer("gpt2"))
    assert gpt2.eos_token_id == gpt2.bos_token_id == 50256
    assert gpt2.encode("hi") == gpt2.encode("hi", add_special_tokens=False)  # gpt2 adds none
    assert gpt2.decode([*gpt2.encode("hi"), 50256]) == "hi"


def test_sentencepiece_fallback_matches_tokenizer_json(tmp_path: Path) -> None:
    """spiece.model alone (no tokenizer.json) encodes like the transformers T5 tokenizer."""
    path = shared_tokenizer("t5")
    if not (path / "spiece.model").is_file():
        pytest.skip("spiece.model not in ../shared/tokenizers/t5")
    only_sp = load_tokenizer(_copy(path, tmp_path / "sp", ("spiece.model",)))
    assert only_sp.source == "spiece.model"
    theirs = _reference("t5", path)
    for text in ENGLISH:
        ids = only_sp.encode(text)
        assert ids == theirs(text).input_ids, text
        assert only_sp.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    assert only_sp.eos_token_id == 1 and only_sp.pad_token_id == 0
    assert only_sp.token_to_id("<extra_id_0>") == 32099 and only_sp.vocab_size == 32100


def _stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    decoder = tokenizer.stream_decoder()
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.flush())
    return pieces


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_stream_decoding_equals_full_decode(kind: str) -> None:
    tokenizer = load_tokenizer(shared_tokenizer(kind))
    for text in ENGLISH + MULTIBYTE:
        ids = tokenizer.encode(text)
        pieces = _stream(tokenizer, ids)
        assert "".join(pieces) == tokenizer.decode(ids), text
        assert not any(REPLACEMENT_CHAR in p for p in pieces), (text, pieces)


def test_stream_decoding_waits_for_split_characters() -> None:
    """GPT-2 splits an emoji over several byte tokens: nothing is shown until it is whole."""
    gpt2 = load_tokenizer(shared_tokenizer("gpt2"))
    ids = gpt2.encode(" 🦀")
    assert REPLACEMENT_CHAR in gpt2.decode(ids[:-1])  # the test only means something if split
    pieces = _stream(gpt2, ids)
    assert "".join(pieces) == " 🦀"
    assert "🦀" in pieces  # the emoji arrives whole, in one piece, once its last byte is in
    assert pieces.index("🦀") == len(ids) - 1


def test_stream_keeps_sentencepiece_spaces() -> None:
    t5 = load_tokenizer(shared_tokenizer("t5"))
    ids = t5.encode("ls -la /tmp", add_special_tokens=False)
    pieces = [p for p in _stream(t5, ids) if p]
    assert "".join(pieces) == "ls -la /tmp"
    assert any(p.startswith(" ") for p in pieces[1:])  # word starts carry their space


def test_special_ids_from_config_files(tmp_path: Path) -> None:
    d = _copy(shared_tokenizer("gpt2"), tmp_path / "m", ("tokenizer.json",))
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [50256, 198]}))
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
                "pad_token": {"content": "<|endoftext|>"},
            }
        )
    )
    tok = load_tokenizer(d)
    assert tok.eos_token_ids == {50256, 198} and tok.eos_token_id == 50256
    assert tok.pad_token_id == 50256
    assert tok.chat_template and "messages" in tok.chat_template
    assert tok.decode(tok.encode("a\nb")) == "ab"  # eos ids are skipped when decoding


def test_missing_tokenizer_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        load_tokenizer(tmp_path)
    assert "tokenizer.json or spiece.model" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_tokenizer_files_are_model_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "spiece.model").write_bytes(b"\x00not a sentencepiece model\xff" * 3)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "tokenizer.json").write_text("{}")
    (tmp_path / "c" / "config.json").write_text("{not json")
    for name in ("a", "b", "c"):
        with pytest.raises(ModelError) as err:
            load_tokenizer(tmp_path / name)
        assert "cannot read" in str(err.value) and "pull" in str(err.value)
