"""From a model directory to a loaded runner.

`detect_layout` tells the family and on-disk layout from the files present; `load_model`
reads the optional manifest `shellfish-model.json` (written by the model store), fills a
`ModelInfo`, checks the files the manifest names, and hands off to the family's runner module
(`engine.causal`, `engine.seq2seq`, `engine.recurrent`), each exposing
`load(path, info, *, providers, threads) -> Runner`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

from shellfish.engine.base import GenerationConfig, ModelInfo, Runner
from shellfish.errors import ModelError, ModelNotFound

MANIFEST = "shellfish-model.json"
RECURRENT_DESCRIPTOR = "shellfish-recurrent.json"
FAMILIES = ("causal", "seq2seq", "recurrent")

# What detect_layout looks for, in the order it looks (for the "expected" message too).
EXPECTED = (
    f"{RECURRENT_DESCRIPTOR} (recurrent)",
    "genai_config.json + model.onnx (causal, onnxruntime-genai)",
    "encoder_model.onnx + decoder_model*.onnx (seq2seq)",
    "decoder_model_merged.onnx, model.onnx or decoder_model.onnx (causal, optimum)",
)


def detect_layout(path: Path) -> tuple[str, str]:
    """(family, layout) of a model directory; `ModelError` listing what was expected if none."""
    path = Path(path)
    if not path.is_dir():
        raise ModelNotFound(
            f"no model directory at {path}", hint="check the path or run `shellfish models list`"
        )
    if (path / RECURRENT_DESCRIPTOR).is_file():
        return "recurrent", "descriptor"
    if (path / "genai_config.json").is_file():
        return "causal", "genai"
    if (path / "encoder_model.onnx").is_file():
        if (path / "decoder_model_merged.onnx").is_file():
            return "seq2seq", "optimum-merged"
        return "seq2seq", "optimum-split"
    if (path / "decoder_model_merged.onnx").is_file():
        return "causal", "optimum-merged"
    if (path / "model.onnx").is_file():
        return "causal", "optimum"
    if (path / "decoder_model.onnx").is_file():
        return "causal", "optimum-split"
    present = sorted(p.name for p in path.iterdir())[:12]
    raise ModelError(
        f"no recognisable model in {path} (found: {', '.join(present) or 'nothing'})",
        hint="expected one of: " + "; ".join(EXPECTED),
    )


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a model dir ({} when there is none); malformed -> ModelError."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {file}: {exc}", hint="reinstall the model with `shellfish models pull`"
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(
            f"{file} is not a JSON object", hint="reinstall the model with `shellfish models pull`"
        )
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise ModelError(f"{file}: 'files' must be an object", hint="reinstall the model")
    for key in ("generation",):
        if key in data and not isinstance(data[key], dict):
            raise ModelError(f"{file}: {key!r} must be an object", hint="reinstall the model")
    return data


def check_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest names exists (hashes are checked at install, not per load)."""
    root = Path(path).resolve()
    for rel in manifest.get("files", {}):
        target = (root / rel).resolve()
        if root not in target.parents or not target.is_file():
            raise ModelError(
                f"model file {rel!r} named in {MANIFEST} is missing from {path}",
                hint="reinstall the model with "
                f"`shellfish models pull {manifest.get('name', path.name)}`",
            )


def generation_defaults(raw: dict[str, Any] | None) -> GenerationConfig:
    """A GenerationConfig from a manifest's 'generation' mapping (unknown keys are ignored)."""
    if not raw:
        return GenerationConfig()
    known = {f.name for f in dataclasses.fields(GenerationConfig)}
    clean = {k: v for k, v in raw.items() if k in known}
    try:
        config = GenerationConfig().merged(**clean)
        config.validate()
    except Exception as exc:
        raise ModelError(
            f"bad generation defaults in {MANIFEST}: {exc}", hint="reinstall the model"
        ) from exc
    return config


def infer_template(path: Path, family: str) -> str:
    """Prompt template name when no manifest says: chatml for im_start chat models, flan for T5."""
    if family == "seq2seq":
        return "flan"
    cfg_file = Path(path) / "tokenizer_config.json"
    if cfg_file.is_file():
        try:
            template = json.loads(cfg_file.read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError):
            template = None
        if isinstance(template, str) and "<|im_start|>" in template:
            return "chatml"
    return "plain"


def graphs_id(path: Path, manifest: dict[str, Any]) -> str:
    """What identifies a model's computation: the sha256 of its graph files from the manifest,
    else (a model dir without one) their names, sizes and modification times."""
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else None
    graphs = sorted((k, str(v)) for k, v in (files or {}).items() if ".onnx" in k)
    if not graphs:
        graphs = sorted(
            (p.name, f"{p.stat().st_size}:{p.stat().st_mtime_ns}")
            for p in Path(path).iterdir()
            if ".onnx" in p.name
        )
    return hashlib.sha256(json.dumps(["kv1", graphs]).encode()).hexdigest()


def load_model(
    path: Path,
    *,
    name: str | None = None,
    provider: str = "cpu",
    threads: int = 0,
    max_context: int = 0,
    prefill_graph: bool = False,
    prefix_dir: Path | None = None,
) -> tuple[Runner, list[str]]:
    """Load the model in `path`; returns the runner and warnings (e.g. provider fallbacks).

    `prefill_graph` loads a causal model's second graph for long prefills when it has one
    (`engine.causal.PREFILL_FILE`): worth its load time and memory in long-lived processes.
    `prefix_dir` keeps a causal chat model's system turns there between processes
    (`engine.kvcache.DiskPrefixes`).

    `max_context` (the `engine.max_context` setting; 0: no cap) caps the model's context
    window: a prompt plus its new tokens never reads more, and a longer prompt is refused with
    `PromptTooLong` naming that number.
    """
    from shellfish.engine.providers import choose_providers, default_threads

    path = Path(path)
    family, layout = detect_layout(path)
    manifest = read_manifest(path)
    check_files(path, manifest)
    family = str(manifest.get("family") or family)
    if family not in FAMILIES:
        raise ModelError(
            f"unknown model family {family!r} in {MANIFEST}",
            hint=f"expected one of {', '.join(FAMILIES)}",
        )
    context = manifest.get("context_length", 0)
    if not isinstance(context, int) or context < 0:
        raise ModelError(
            f"bad context_length {context!r} in {MANIFEST}", hint="reinstall the model"
        )
    if max_context > 0:
        # The family loaders take the smallest context they know of, so this caps them all.
        context = min(context, max_context) if context else max_context
    info = ModelInfo(
        name=name or str(manifest.get("name") or path.name),
        family=family,
        layout=str(manifest.get("layout") or layout),
        path=str(path),
        context_length=context,
        template=str(manifest.get("template") or infer_template(path, family)),
        defaults=generation_defaults(manifest.get("generation")),
        extra={"suggest": dict(manifest.get("suggest") or {})},
    )
    choice = choose_providers(provider)
    try:
        module = importlib.import_module(f"shellfish.engine.{family}")
    except ImportError as exc:
        raise ModelError(
            f"this shellfish cannot run {family} models ({exc})", hint="update shellfish"
        ) from exc
    options: dict[str, Any] = {}
    if family == "causal":
        if prefill_graph:
            options["prefill_graph"] = True
        if prefix_dir is not None:
            from shellfish.engine.kvcache import DiskPrefixes

            options["disk_prefixes"] = DiskPrefixes(prefix_dir, graphs_id(path, manifest))
    runner = module.load(
        path, info, providers=choice.providers, threads=threads or default_threads(), **options
    )
    return runner, list(choice.warnings)
