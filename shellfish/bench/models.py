"""Where a bench model's files are: one model, several formats side by side.

A bench model is a directory. Two layouts are understood:

- the `benchmarks/make_models.py` layout: `hf/`, `onnx/`, `onnx-int8/`, `ct2-fp32/`,
  `ct2-int8/` (optionally `int4/`, `genai/`, `*.gguf`) plus `bench-model.json`;
- an installed shellfish model (e.g. the int4 onnxruntime-genai layout): the directory itself
  is the ONNX model (and the genai model when it has `genai_config.json`).

`bench-model.json` may name extra files: {"gguf": "/path/model.gguf", "hf": "/path/ckpt"}.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shellfish.errors import ModelNotFound

DEFAULT_BENCH_ROOT = "/work/cache/bench-models"
DEFAULT_MODEL_ROOTS = ("/work/cache/models",)
DEFAULT_GGUF_DIR = "/work/cache/bench-peers/gguf"


@dataclass
class BenchModel:
    name: str
    family: str  # causal | seq2seq
    root: str
    vocab_size: int
    max_positions: int | None = None  # None: no fixed window (T5's relative positions)
    onnx: str | None = None  # fp32 ONNX dir shellfish and optimum run
    onnx_int8: str | None = None
    int4: str | None = None  # int4 ONNX dir (genai layout)
    genai: str | None = None  # dir with genai_config.json for onnxruntime-genai
    hf: str | None = None  # transformers checkpoint
    ct2_fp32: str | None = None
    ct2_int8: str | None = None
    gguf: str | None = None
    tokenizer: str | None = None  # tokenizer.json
    random_weights: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchModel:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def formats(self) -> list[str]:
        names = ("onnx", "onnx_int8", "int4", "genai", "hf", "ct2_fp32", "ct2_int8", "gguf")
        return [n for n in names if getattr(self, n)]


def bench_roots(
    environ: dict[str, str] | None = None, models_dir: Path | None = None
) -> list[Path]:
    env = os.environ if environ is None else environ
    roots = [Path(env.get("SHELLFISH_BENCH_MODELS", DEFAULT_BENCH_ROOT))]
    roots += [Path(p) for p in DEFAULT_MODEL_ROOTS]
    if models_dir is not None:
        roots.append(models_dir)
    return roots


def find_model(
    name_or_path: str, environ: dict[str, str] | None = None, models_dir: Path | None = None
) -> BenchModel:
    """Resolve a name (searched in the bench and model roots) or a directory path."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return describe(candidate)
    roots = bench_roots(environ, models_dir)
    for root in roots:
        if (root / name_or_path).is_dir():
            return describe(root / name_or_path)
    raise ModelNotFound(
        f"bench model {name_or_path!r} not found in {', '.join(str(r) for r in roots)}",
        hint="build the random-weight models with `python benchmarks/make_models.py` "
        "or pass a model directory",
    )


def _complete(path: Path) -> bool:
    """A make_models.py sub-directory counts only once its build finished."""
    if not path.is_dir():
        return False
    if not (path.parent / "bench-model.json").is_file():
        return True
    return (path / ".complete").is_file() or (path.parent / f".{path.name}.complete").is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(root: Path) -> BenchModel:
    """Look at a directory and say which formats of the model it holds."""
    root = root.resolve()
    meta = _read_json(root / "bench-model.json")

    def sub(name: str) -> str | None:
        path = root / name
        return str(path) if _complete(path) else None

    onnx = sub("onnx")
    int4 = sub("int4")
    genai = sub("genai")
    if onnx is None and any(root.glob("*.onnx")):
        onnx = str(root)  # an installed shellfish model: the directory itself
    for d in (onnx, int4):
        if d and genai is None and (Path(d) / "genai_config.json").is_file():
            genai = d
    if onnx and int4 is None and _is_int4(Path(onnx)):
        int4, onnx = onnx, None
    model = BenchModel(
        name=str(meta.get("name") or root.name),
        family="causal",
        root=str(root),
        vocab_size=0,
        onnx=onnx,
        onnx_int8=sub("onnx-int8"),
        int4=int4,
        genai=genai,
        hf=meta.get("hf") or sub("hf"),
        ct2_fp32=sub("ct2-fp32"),
        ct2_int8=sub("ct2-int8"),
        gguf=meta.get("gguf")
        or next((str(p) for p in sorted(root.glob("*.gguf"))), None)
        or find_gguf(str(meta.get("name") or root.name)),
        random_weights=bool(meta.get("random_weights", False)),
    )
    _read_config(model)
    if not model.formats():
        raise ModelNotFound(
            f"{root} holds no model files the bench knows (onnx/, hf/, ct2-*/, *.onnx, *.gguf)",
            hint="build it with `python benchmarks/make_models.py` or pass a model directory",
        )
    return model


def _is_int4(onnx_dir: Path) -> bool:
    """int4 graphs use MatMulNBits; look in the (small, external-data) graph files."""
    if "int4" in onnx_dir.name.lower():
        return True
    for graph in onnx_dir.glob("*.onnx"):
        try:
            if graph.stat().st_size <= 64 * 2**20 and b"MatMulNBits" in graph.read_bytes():
                return True
        except OSError:
            continue
    return False


def find_gguf(name: str, environ: dict[str, str] | None = None) -> str | None:
    """A GGUF of the same model in the bench GGUF directory (matched by file-name prefix)."""
    env = os.environ if environ is None else environ
    folder = Path(env.get("SHELLFISH_BENCH_GGUF", DEFAULT_GGUF_DIR))
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.gguf")):
        if path.name.lower().startswith(name.lower() + "."):
            return str(path)
    return None


def _read_config(model: BenchModel) -> None:
    """Fill family, vocab size, window and tokenizer from whichever config files exist."""
    dirs = [d for d in (model.hf, model.onnx, model.int4, model.genai, model.onnx_int8) if d]
    for d in dirs:
        cfg = _read_json(Path(d) / "config.json")
        if cfg:
            if cfg.get("is_encoder_decoder") or cfg.get("model_type") in {"t5", "bart", "marian"}:
                model.family = "seq2seq"
            model.vocab_size = model.vocab_size or int(cfg.get("vocab_size") or 0)
            window = cfg.get("n_positions") or cfg.get("max_position_embeddings")
            if model.family == "causal" and window and not model.max_positions:
                model.max_positions = int(window)
        genai = _read_json(Path(d) / "genai_config.json").get("model", {})
        if genai:
            model.vocab_size = model.vocab_size or int(genai.get("vocab_size") or 0)
            if genai.get("context_length") and not model.max_positions:
                model.max_positions = int(genai["context_length"])
        tok = Path(d) / "tokenizer.json"
        if model.tokenizer is None and tok.is_file():
            model.tokenizer = str(tok)
