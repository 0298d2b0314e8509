"""`shellfish eval`: score suggestions on (request, command) pairs with the NLC2CMD metric."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from shellfish.environment import Environment
from shellfish.errors import ExitStatus, UsageError

DEFAULT_NL = "../shared/eval/nl2bash/dev.nl"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score command suggestions (NLC2CMD, exact and template match, time)",
        description=(
            "Run (request, command) pairs through the suggestion path and print the NLC2CMD score "
            "(-1..1, utilities and flags) of the first command, the same under the NLC2CMD "
            "competition's protocol (top 5, each weighted by its confidence), exact match, "
            "template match (arguments normalised) and the median / p90 time per request. "
            "Tune on a dev split, never on a test split."
        ),
    )
    p.add_argument(
        "--nl",
        type=Path,
        help="requests, one per line (default: the NL2Bash dev split in ../shared)",
    )
    p.add_argument("--cm", type=Path, help="reference commands, aligned with --nl")
    p.add_argument("--limit", type=int, help="only the first N pairs")
    p.add_argument(
        "-m",
        "--model",
        help="model name or alias, or a model directory (default: the suggest model)",
    )
    p.add_argument(
        "--config",
        choices=("zero-shot", "retrieval", "full"),
        default="full",
        help="zero-shot prompt, + retrieved examples, + candidates/validation/vote (default)",
    )
    p.add_argument(
        "--os", dest="os_name", help="pretend the requests come from this OS (Linux, Darwin)"
    )
    p.add_argument(
        "--cwd",
        help="pretend the requests come from this directory (as the shell widget sends it); "
        "the summary then counts answers that contain it (cwd_leaks)",
    )
    p.add_argument("--output", type=Path, help="write every prediction as JSON lines to this file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.eval.run import Report, evaluate, load_pairs

    nl = args.nl or Path(DEFAULT_NL)
    cm = args.cm or nl.with_suffix(".cm")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    pairs = load_pairs(nl, cm, args.limit)
    runner, name = _runner(args.model, env)
    report = Report(config=args.config, model=name, cwd=args.cwd)
    load_before = _load_average()
    out = args.output.open("w", encoding="utf-8") if args.output else None
    context: dict[str, Any] = {"shell": "bash"}
    if args.os_name:
        context["os"] = args.os_name
    if args.cwd:
        context["cwd"] = args.cwd
    try:
        for i, item in enumerate(
            evaluate(
                pairs,
                runner,
                settings=env.settings,
                paths=env.paths,
                config=args.config,
                context=context,
            ),
            start=1,
        ):
            report.items.append(item)
            if out is not None:
                out.write(json.dumps(item.__dict__, ensure_ascii=False) + "\n")
            if env.stderr_isatty or i % 25 == 0:
                s = report.summary()
                env.stderr.write(
                    f"\r{i}/{len(pairs)}  nlc2cmd {s['nlc2cmd']:+.3f}  "
                    f"median {s['median_s']:.2f} s" + ("" if env.stderr_isatty else "\n")
                )
                env.stderr.flush()
    finally:
        if out is not None:
            out.close()
        close = getattr(runner, "close", None)
        if callable(close):
            close()
    if env.stderr_isatty:
        env.stderr.write("\n")
    summary = report.summary()
    # Timings depend on what else the machine runs: keep the load next to them.
    summary["load_avg_1m"] = [load_before, _load_average()]
    if args.json:
        env.stdout.write(json.dumps(summary) + "\n")
    else:
        env.stdout.write(
            f"model {summary['model']}  config {summary['config']}  n={summary['n']}\n"
            f"NLC2CMD score   {summary['nlc2cmd']:+.3f}  (first command, full confidence)\n"
            f"  competition   {summary['nlc2cmd_competition']:+.3f}  (top 5, confidence-weighted)\n"
            f"exact match     {summary['exact_match']:.3f}\n"
            f"template match  {summary['template_match']:.3f}\n"
            f"time/request    median {summary['median_s']:.2f} s, p90 {summary['p90_s']:.2f} s\n"
            + (
                f"cwd leaks       {summary['cwd_leaks']} of {summary['n']} answers\n"
                if args.cwd
                else ""
            )
            + f"load average    {load_before:.2f} at start, {summary['load_avg_1m'][1]:.2f} at end"
            f" ({os.cpu_count()} CPUs)\n"
        )
    return ExitStatus.OK


def _load_average() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return 0.0


def _runner(model: str | None, env: Environment) -> tuple[Any, str]:
    """A runner for `model`: a model directory, else a name resolved through the store."""
    if model and Path(model).expanduser().is_dir():
        from shellfish.engine.loader import load_model

        path = Path(model).expanduser()
        runner, _warnings = load_model(
            path,
            name=path.name,
            provider=env.settings.engine.provider,
            threads=env.settings.engine.threads,
            max_context=env.settings.engine.max_context,
            prefill_graph=env.settings.engine.prefill_graph != "never",
        )
        return runner, path.name
    from shellfish.request import TaskRequest
    from shellfish.store.pool import ModelPool
    from shellfish.tasks import resolve_model_name

    name = resolve_model_name(
        TaskRequest(task="suggest", text="-", model=model), env.settings, env.paths
    )
    return ModelPool(env.paths, env.settings, long_lived=True).get(name), name
