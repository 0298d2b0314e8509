"""`shellfish tune`: adapt a local model to request -> command pairs (LoRA), install the result."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from shellfish.environment import Environment
from shellfish.errors import ExitStatus, UsageError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tune",
        help="fine-tune a local model on request -> command pairs (LoRA) and install it",
        description=(
            "LoRA fine-tuning of a catalog model (or a transformers checkpoint directory) on "
            "request -> command pairs: the NL2Bash train pairs and tldr examples shipped with "
            "shellfish, your own --pairs files, and with --history the suggestions you went on "
            "to run. Runs in the conversion environment (torch + transformers), on the CPU "
            "unless --device says otherwise; checkpoints as it goes, so running the same "
            "command again after Ctrl-C or a crash resumes, and again with a larger "
            "--max-steps or --epochs extends the run. The adapter is merged into the base "
            "weights, converted to ONNX (int8 unless --precision says otherwise; int8 also "
            "gets the daemon's prefill graph, as the default model does) and installed "
            "as a new model whose manifest records the base, the data files' sha256, the "
            "hyper-parameters, seed and steps."
        ),
    )
    p.add_argument("base", help="catalog model name or alias, or a transformers checkpoint dir")
    p.add_argument("--name", default="", help="name of the tuned model (default: BASE-tuned)")
    p.add_argument(
        "--pairs",
        nargs=2,
        action="append",
        default=[],
        metavar=("NL", "CM"),
        help="aligned request / command files to train on as well (repeatable)",
    )
    p.add_argument(
        "--no-shipped",
        action="store_true",
        help="leave out the shipped NL2Bash train pairs and tldr examples",
    )
    p.add_argument(
        "--history",
        action="store_true",
        help="also train on your accepted suggestions and on what you ran instead of a "
        "suggestion you edited (opt-in; read from your history log and shell history, "
        "redacted; edits need zsh's timed history)",
    )
    p.add_argument(
        "--examples",
        type=int,
        default=3,
        help="retrieved pairs in each training prompt, as at run time (default 3)",
    )
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--alpha", type=float, default=32.0, help="LoRA alpha (default 32)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (default: none)")
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=2048,
        help="tokens per batch, padding included (default 2048; on a GPU 16384 keeps it"
        " busy: 44k tokens/s on an H200, where 4096 gave ~14k beside a second run)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "mps"),
        help="where to train (default cpu; ~190 tokens/s on 2 cores)",
    )
    p.add_argument("--fp32", action="store_true", help="train in fp32 (default: bf16 autocast)")
    p.add_argument(
        "--precision",
        default="int8",
        choices=("int8", "int4", "fp16", "fp32"),
        help="precision of the installed ONNX model (default int8: int4 re-quantisation of "
        "the merged weights undid the adapter, see docs/quality.md)",
    )
    p.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    p.add_argument(
        "--init-adapter",
        type=Path,
        metavar="FILE",
        help="start from this adapter (.safetensors of an earlier run on the same base and "
        "rank) instead of a fresh one",
    )
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.cli.models import loader_validator, make_store, progress_bars
    from shellfish.tune.run import TuneOptions, run_tune

    for flag in ("examples", "rank", "epochs", "batch_tokens", "max_steps", "limit"):
        if getattr(args, flag) < (1 if flag in ("rank", "epochs", "batch_tokens") else 0):
            raise UsageError(f"--{flag.replace('_', '-')} is out of range")
    options = TuneOptions(
        base=args.base,
        name=args.name,
        pairs=[(Path(nl).expanduser(), Path(cm).expanduser()) for nl, cm in args.pairs],
        shipped=not args.no_shipped,
        history=args.history,
        examples=args.examples,
        rank=args.rank,
        alpha=args.alpha,
        lr=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_tokens=args.batch_tokens,
        seed=args.seed,
        save_every=args.save_every,
        device=args.device,
        bf16=not args.fp32,
        precision=args.precision,
        limit=args.limit,
        init_adapter=args.init_adapter.expanduser() if args.init_adapter else None,
    )
    store = make_store(env)
    command = "shellfish " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["tune"] else ""
    with progress_bars(env) as progress:
        started: list[bool] = []

        def on_step(info: dict[str, Any]) -> None:
            if not started:  # the first step reported (after a resume: the next one)
                progress.task("train", "train", info["steps"], unit="steps")
                progress.advance("train", info["step"] - 1)
                started.append(True)
            progress.advance("train", 1)
            loss = "skipped" if info["loss"] is None else f"{info['loss']:.3f}"
            progress.describe("train", f"train  loss {loss}  {info['tokens_per_s']:.0f} tok/s")

        result = run_tune(
            store,
            options,
            environ=env.environ,
            progress=progress,
            on_step=on_step,
            command=command,
            validator=loader_validator(),
        )
    skipped = sum(result.skipped.values())
    env.info(
        f"trained {result.steps} steps (loss {result.first_loss} -> {result.last_loss}); "
        f"{skipped} broken training lines skipped"
        + (
            f"; {result.nonfinite_steps} steps skipped (loss not a finite number)"
            if result.nonfinite_steps
            else ""
        )
    )
    env.stdout.write(f"{result.model.name}\t{result.model.path}\n")
    return ExitStatus.OK
