"""Conversion to ONNX in an isolated environment, so the runtime install stays light.

The heavy converters (torch, transformers, accelerate, gguf, onnxruntime-genai) live in a
virtual environment at `paths.export_env`, created on demand with the `export` extra's
packages; `SHELLFISH_EXPORT_PYTHON` points at an existing interpreter that has them instead
(tests and CI use the development venv). `convert_worker.py` runs there as a subprocess and
reports its steps on stderr (`@@step NAME`, `@@unsupported MESSAGE`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shellfish.errors import ModelError
from shellfish.paths import Paths
from shellfish.store.convert_worker import die_with_parent_hook
from shellfish.store.progress import Progress

WORKER = Path(__file__).resolve().parent / "convert_worker.py"
# Mirrors pyproject's `export` extra (kept here so the venv can be built from an installed wheel).
EXPORT_REQUIREMENTS = (
    "torch==2.13.0",
    "transformers>=4.45",
    "accelerate>=0.30",
    "gguf>=0.10",
    "onnx>=1.16",
    "onnxruntime-genai>=0.5",
    "onnx-ir>=0.1",  # the genai builder imports it but does not declare it
)
EXPORT_MARKER = ".shellfish-export-ready"
GGUF_STEPS = ("read-gguf", "load-gguf", "save-hf", "build-onnx")
HF_STEPS = ("build-onnx",)
# Builder options that change the graph's inputs or outputs so shellfish's causal runner (token
# ids in, logits out, one KV cache per layer) could not run the result.
INCOMPATIBLE_BUILDER_OPTIONS = frozenset(
    {
        "exclude_embeds",
        "exclude_lm_head",
        "include_hidden_states",
        "use_paged_attention",
        "config_only",
        "filename",
        "hf_token",
        "hf_remote",
    }
)
_OPTION = re.compile(r"^([a-z][a-z0-9_]*)=(\S+)$")


class UnsupportedModel(ModelError):
    """The input cannot be converted (unknown architecture, not a GGUF, ...)."""


@dataclass(frozen=True)
class ConversionResult:
    architecture: str
    seconds: float
    # Passes up to this many tokens get logits per position from the pruned LM head
    # (convert_worker.short_pass_logits; prompt lookup needs it); 0: not changed.
    short_pass_logits: int = 0


def check_builder_options(options: Sequence[str], where: str = "builder_options") -> list[str]:
    """Validate onnxruntime-genai builder `--extra_options` (KEY=VALUE strings).

    Returns them as a list; raises ModelError for a malformed entry, a repeated key or an
    option that would produce a model shellfish cannot run.
    """
    seen: set[str] = set()
    out: list[str] = []
    for option in options:
        match = _OPTION.match(option) if isinstance(option, str) else None
        if match is None:
            raise ModelError(
                f"{where}: {option!r} is not a builder option",
                hint='write each one as KEY=VALUE, e.g. "prune_lm_head=true"',
            )
        key = match.group(1)
        if key in INCOMPATIBLE_BUILDER_OPTIONS:
            raise ModelError(
                f"{where}: {key} changes the model's inputs or outputs; shellfish could not run it",
                hint=f"remove {key}={match.group(2)}",
            )
        if key in seen:
            raise ModelError(f"{where}: {key} is given twice", hint="keep one value")
        seen.add(key)
        out.append(option)
    return out


def worker_args(
    mode: str,
    source: Path,
    out: Path,
    work: Path,
    *,
    precision: str = "int4",
    builder_options: Sequence[str] = (),
    tie_embeddings: bool = False,
    adapter: Path | None = None,
) -> list[str]:
    """The command-line arguments for convert_worker.py (after the script path)."""
    args = [
        mode,
        "--input",
        str(source),
        "--out",
        str(out),
        "--work",
        str(work),
        "--precision",
        precision,
    ]
    for option in check_builder_options(builder_options):
        args += ["--builder-option", option]
    if tie_embeddings:
        if mode != "gguf":
            raise ModelError(
                "tie_embeddings applies to GGUF sources only",
                hint="remove tie_embeddings from the descriptor",
            )
        args.append("--tie-embeddings")
    if adapter is not None:
        args += ["--adapter", str(adapter)]
    return args


def export_python(paths: Paths, environ: dict[str, str], progress: Progress | None = None) -> Path:
    """The interpreter of the export environment, creating the environment if needed."""
    override = environ.get("SHELLFISH_EXPORT_PYTHON")
    if override:
        python = Path(override)
        if not python.exists():
            raise ModelError(
                f"SHELLFISH_EXPORT_PYTHON={override} does not exist",
                hint="point it at a python that has the `export` extra installed",
            )
        return python
    venv = paths.export_env
    python = venv / "bin" / "python"
    # The marker holds the requirement list, so a changed list re-installs the environment.
    wanted = "\n".join(EXPORT_REQUIREMENTS) + "\n"
    marker = venv / EXPORT_MARKER
    if python.exists() and marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return python
    if progress:
        progress.task("export-env", "create the export environment (one time)", 2, unit="steps")
    proc = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        raise ModelError(f"cannot create the export environment at {venv}: {proc.stdout[-300:]}")
    if progress:
        progress.advance("export-env", 1)
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *EXPORT_REQUIREMENTS]
    find_links = environ.get("SHELLFISH_EXPORT_FIND_LINKS")
    if find_links:
        cmd[4:4] = ["--find-links", find_links]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        raise ModelError(
            f"cannot install the converters into {venv}: {tail}",
            hint="set SHELLFISH_EXPORT_FIND_LINKS to a folder with a CPU torch wheel, or "
            "SHELLFISH_EXPORT_PYTHON to a python that has the `export` extra",
        )
    marker.write_text(wanted, encoding="utf-8")
    if progress:
        progress.advance("export-env", 1)
        progress.done("export-env")
    return python


def start_worker(python: Path, script: Path, args: list[str]) -> subprocess.Popen[str]:
    """Start a worker script in the export environment, its stdout and stderr piped.

    Unbuffered (progress lines arrive as they are written), and ended by the kernel if
    shellfish itself is killed, so no converter or trainer is left running on its own.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [str(python), str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=die_with_parent_hook(),
    )


def run_worker(
    python: Path,
    args: list[str],
    steps: tuple[str, ...],
    label: str,
    progress: Progress | None = None,
) -> ConversionResult:
    """Run convert_worker.py with `args`; map its exit status and stderr to errors."""
    key = f"convert:{label}"
    if progress:
        progress.task(key, f"convert {label}", len(steps), unit="steps")
    start = time.monotonic()
    proc = start_worker(python, WORKER, args)
    unsupported = ""

    def marker(kind: str, payload: str) -> bool:
        nonlocal unsupported
        if kind == "step":
            if progress and payload in steps:
                progress.advance(key, 1)
            return True
        if kind == "unsupported":
            unsupported = payload
            return True
        return False

    try:
        code, out, tail = follow_worker(proc, marker)
    except BaseException:
        # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI) or a bug: never leave a
        # converter running on its own; the caller's cleanup then removes its files.
        proc.kill()
        proc.wait()
        raise
    if code == 3 and unsupported:
        raise UnsupportedModel(
            f"cannot convert {label}: {unsupported}",
            hint="nothing was installed; use a supported model",
        )
    if code != 0:
        detail = " | ".join(t.strip() for t in tail[-4:])
        raise ModelError(
            f"conversion of {label} failed (exit {code}): {detail}",
            hint="nothing was installed; run with the same input again, or report it",
        )
    if progress:
        progress.done(key)
    info = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return ConversionResult(
        str(info.get("architecture", "?")),
        time.monotonic() - start,
        int(info.get("short_pass_logits") or 0),
    )


def follow_worker(
    proc: subprocess.Popen[str], marker: Callable[[str, str], bool]
) -> tuple[int, str, list[str]]:
    """Follow a worker's stderr to its end: (exit status, stdout, the last stderr lines).

    Each ``@@KIND PAYLOAD`` line goes to `marker(KIND, PAYLOAD)`; one it does not handle
    (returns False) is kept with the plain lines, whose last ones explain a failure.
    """
    assert proc.stderr is not None and proc.stdout is not None
    tail: list[str] = []
    for line in proc.stderr:
        line = line.rstrip("\n")
        if line.startswith("@@"):
            kind, _, payload = line[2:].partition(" ")
            if marker(kind, payload):
                continue
        if line.strip():
            tail = [*tail[-20:], line]
    out = proc.stdout.read()
    return proc.wait(), out, tail


def convert_gguf(
    python: Path,
    gguf: Path,
    out: Path,
    work: Path,
    *,
    precision: str = "int4",
    builder_options: Sequence[str] = (),
    tie_embeddings: bool = False,
    adapter: Path | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Convert a GGUF file to ONNX in `out`, with a LoRA `adapter` directory merged first."""
    args = worker_args(
        "gguf",
        gguf,
        out,
        work,
        precision=precision,
        builder_options=builder_options,
        tie_embeddings=tie_embeddings,
        adapter=adapter,
    )
    return run_worker(python, args, GGUF_STEPS, gguf.name, progress)


def convert_hf(
    python: Path,
    hf_dir: Path,
    out: Path,
    work: Path,
    *,
    precision: str = "int4",
    builder_options: Sequence[str] = (),
    adapter: Path | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Convert a transformers checkpoint to ONNX in `out` (a LoRA `adapter` merged first)."""
    args = worker_args(
        "hf",
        hf_dir,
        out,
        work,
        precision=precision,
        builder_options=builder_options,
        adapter=adapter,
    )
    steps = ("merge-adapter", *HF_STEPS) if adapter is not None else HF_STEPS
    return run_worker(python, args, steps, hf_dir.name, progress)
