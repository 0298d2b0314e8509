"""One tokenizer interface over `tokenizers` (tokenizer.json) and `sentencepiece` (spiece.model).

`load_tokenizer(model_dir)` prefers tokenizer.json and falls back to spiece.model; special ids
come from tokenizer_config.json, special_tokens_map.json, config.json and
generation_config.json (in that order of increasing authority for eos). A T5 encoding ends with
`</s>` exactly like the transformers T5 tokenizer.

`Tokenizer.stream_decoder()` turns token ids into text pieces as they are generated: it decodes
the running ids and emits only the new stable suffix, holding back a trailing U+FFFD (half a
UTF-8 character from byte-level or byte-fallback pieces) until the rest of it arrives. The
concatenation of every `push` plus `flush` equals `decode(all ids)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shellfish.errors import ModelError

REPLACEMENT_CHAR = "\ufffd"
_T5_MODEL_TYPES = {"t5", "mt5", "umt5", "longt5", "byt5"}
_HINT = "reinstall the model with `shellfish models pull`"


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when the file is absent; a corrupt file is a ModelError."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path.name}: {exc}", hint=_HINT) from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} is not a JSON object", hint=_HINT)
    return data


def _token_content(value: Any) -> str | None:
    """Special tokens appear as plain strings or as {"content": ...} objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _int_ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


class _Backend:
    """What the two libraries must offer; `Tokenizer` adds special ids and streaming on top."""

    vocab_size: int

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    def special_ids(self) -> set[int]:
        raise NotImplementedError


class _HFTokenizersBackend(_Backend):
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self.tok = HFTokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a plain Exception for any parse error
            raise ModelError(f"cannot read {path.name}: {str(exc)[:200]}", hint=_HINT) from exc
        self.vocab_size = int(self.tok.get_vocab_size(with_added_tokens=True))
        self._special = {
            int(i) for i, t in self.tok.get_added_tokens_decoder().items() if t.special
        }

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return str(self.tok.decode(ids, skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        found = self.tok.token_to_id(token)
        return None if found is None else int(found)

    def special_ids(self) -> set[int]:
        return set(self._special)


class _SentencePieceBackend(_Backend):
    """spiece.model plus the T5 conventions: `<extra_id_N>` above the pieces, `</s>` appended."""

    def __init__(self, path: Path, *, add_bos: bool, add_eos: bool, extra_ids: int) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        try:
            data = path.read_bytes()
            self.sp.LoadFromSerializedProto(data)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError on a bad proto
            raise ModelError(f"cannot read {path.name}: {str(exc)[:200]}", hint=_HINT) from exc
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.pieces = int(self.sp.get_piece_size())
        self.extra = {self.pieces + extra_ids - 1 - n: f"<extra_id_{n}>" for n in range(extra_ids)}
        self.vocab_size = self.pieces + extra_ids
        self._special: dict[int, str] = {}
        for getter in (self.sp.unk_id, self.sp.bos_id, self.sp.eos_id, self.sp.pad_id):
            i = int(getter())
            if i >= 0:
                self._special[i] = str(self.sp.id_to_piece(i))
        self._special.update(self.extra)
        self._by_text = {text: i for i, text in self._special.items()}

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = [int(i) for i in self.sp.encode(text)]
        if add_special_tokens:
            if self.add_bos and self.sp.bos_id() >= 0:
                ids.insert(0, int(self.sp.bos_id()))
            if self.add_eos and self.sp.eos_id() >= 0:
                ids.append(int(self.sp.eos_id()))
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        # Decode runs of ordinary pieces with sentencepiece (it handles "▁" and byte pieces) and
        # splice the special tokens in as text, like transformers' slow tokenizer does.
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i in self._special or not 0 <= i < self.pieces:
                if run:
                    parts.append(str(self.sp.decode(run)))
                    run = []
                if not skip_special_tokens:
                    parts.append(self._special.get(i, ""))
            else:
                run.append(i)
        if run:
            parts.append(str(self.sp.decode(run)))
        return "".join(parts)

    def token_to_id(self, token: str) -> int | None:
        if token in self._by_text:
            return self._by_text[token]
        i = int(self.sp.piece_to_id(token))
        return None if i == self.sp.unk_id() and token != self.sp.id_to_piece(i) else i

    def special_ids(self) -> set[int]:
        return set(self._special)


class StreamDecoder:
    """Incremental detokenization for one generated sequence (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._emitted = ""

    def push(self, token_id: int) -> str:
        """Add one token id; return the text that is now stable ("" while a character is split)."""
        self.ids.append(int(token_id))
        text = self._tokenizer.decode(self.ids, skip_special_tokens=self._skip)
        # A trailing replacement char is half a UTF-8 sequence: wait for the next token.
        stable = text.rstrip(REPLACEMENT_CHAR)
        if not stable.startswith(self._emitted) or len(stable) <= len(self._emitted):
            return ""
        piece = stable[len(self._emitted) :]
        self._emitted = stable
        return piece

    def flush(self) -> str:
        """At the end: whatever is left (a truly invalid byte sequence decodes to U+FFFD)."""
        text = self._tokenizer.decode(self.ids, skip_special_tokens=self._skip)
        if not text.startswith(self._emitted):
            return ""
        piece = text[len(self._emitted) :]
        self._emitted = text
        return piece

    @property
    def text(self) -> str:
        return self._emitted


class Tokenizer:
    """Encode/decode plus the special ids a runner needs (eos may be several ids)."""

    def __init__(
        self,
        backend: _Backend,
        *,
        eos_token_ids: Iterable[int] = (),
        bos_token_id: int | None = None,
        pad_token_id: int | None = None,
        unk_token_id: int | None = None,
        chat_template: str | None = None,
        source: str = "",
    ) -> None:
        self._backend = backend
        self.eos_token_ids: set[int] = set(eos_token_ids)
        ordered = list(eos_token_ids)
        self.eos_token_id: int | None = ordered[0] if ordered else None
        self.bos_token_id = bos_token_id
        self.pad_token_id = pad_token_id
        self.unk_token_id = unk_token_id
        self.chat_template = chat_template
        self.source = source
        self.vocab_size = backend.vocab_size
        specials = backend.special_ids() | self.eos_token_ids
        specials |= {i for i in (bos_token_id, pad_token_id, unk_token_id) if i is not None}
        self.all_special_ids: list[int] = sorted(specials)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._backend.encode(text, add_special_tokens)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            # eos ids from generation_config may not be marked special in tokenizer.json
            ids = [i for i in ids if i not in self.eos_token_ids]
        return self._backend.decode(ids, skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def stream_decoder(self, skip_special_tokens: bool = True) -> StreamDecoder:
        return StreamDecoder(self, skip_special_tokens)


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The tokenizer stored beside a model: tokenizer.json preferred, else spiece.model."""
    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json")
    tok_config = _read_json(model_dir / "tokenizer_config.json")
    special_map = _read_json(model_dir / "special_tokens_map.json")
    gen_config = _read_json(model_dir / "generation_config.json")
    model_type = str(config.get("model_type", "")).lower()
    tok_class = str(tok_config.get("tokenizer_class", ""))

    backend: _Backend
    if (model_dir / "tokenizer.json").is_file():
        backend = _HFTokenizersBackend(model_dir / "tokenizer.json")
        source = "tokenizer.json"
    else:
        spiece = next(
            (
                model_dir / n
                for n in ("spiece.model", "tokenizer.model")
                if (model_dir / n).is_file()
            ),
            None,
        )
        if spiece is None:
            raise ModelError(
                f"no tokenizer in {model_dir} (expected tokenizer.json or spiece.model)", hint=_HINT
            )
        t5_like = (
            model_type in _T5_MODEL_TYPES
            or tok_class.startswith("T5")
            or (spiece.name == "spiece.model" and not model_type)
        )
        backend = _SentencePieceBackend(
            spiece,
            add_bos=bool(tok_config.get("add_bos_token", not t5_like)),
            add_eos=bool(tok_config.get("add_eos_token", t5_like)),
            extra_ids=int(tok_config.get("extra_ids", 100 if t5_like else 0)),
        )
        source = spiece.name

    def special(name: str) -> int | None:
        """Id of a named special token: config ids first, then its text in the vocabulary."""
        for source_dict in (gen_config, config):
            ids = _int_ids(source_dict.get(f"{name}_token_id"))
            if ids:
                return ids[0]
        for source_dict in (tok_config, special_map):
            text = _token_content(source_dict.get(f"{name}_token"))
            if text is not None:
                found = backend.token_to_id(text)
                if found is not None:
                    return found
        return None

    defaults = {"eos": "</s>", "pad": "<pad>", "unk": "<unk>", "bos": "<s>"}
    if model_type.startswith("gpt2") or backend.token_to_id("<|endoftext|>") is not None:
        defaults.update(eos="<|endoftext|>", bos="<|endoftext|>", unk="<|endoftext|>")

    def with_default(name: str) -> int | None:
        found = special(name)
        return found if found is not None else backend.token_to_id(defaults[name])

    eos_ids = _int_ids(gen_config.get("eos_token_id")) or _int_ids(config.get("eos_token_id"))
    if not eos_ids:
        single = with_default("eos")
        eos_ids = [single] if single is not None else []
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # newer exports store named templates
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    chat_template_file = model_dir / "chat_template.jinja"
    if template is None and chat_template_file.is_file():
        template = chat_template_file.read_text(encoding="utf-8")
    return Tokenizer(
        backend,
        eos_token_ids=eos_ids,
        bos_token_id=with_default("bos"),
        pad_token_id=with_default("pad"),
        unk_token_id=with_default("unk"),
        chat_template=template if isinstance(template, str) else None,
        source=source,
    )
