"""`shellfish bench`: shellfish's engine side by side with the peers, with ratios and plots."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.errors import UsageError

if TYPE_CHECKING:
    from shellfish.environment import Environment


def register(subparsers: Any) -> None:
    from shellfish.bench.spec import DEFAULT_CONTEXTS, DEFAULT_LENGTHS

    parser = subparsers.add_parser(
        "bench",
        help="time shellfish's engine against the peers (transformers, optimum, CT2, ...)",
        description="Load the same model in each engine (one process per engine) and measure "
        "load time, time to first token, decode ms/token, tokens/s and peak memory, with "
        "warm-up and medians; ratios are peer time / shellfish time (above 1: shellfish faster). "
        "A peer that is not installed is reported, never faked.",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="bench model name or directory (repeatable; default: distilgpt2)",
    )
    parser.add_argument(
        "--engines",
        default=None,
        help="comma-separated engines (default: all; --list-engines shows them)",
    )
    parser.add_argument(
        "--lengths",
        default=",".join(map(str, DEFAULT_LENGTHS)),
        help="generation lengths, comma-separated",
    )
    parser.add_argument(
        "--contexts",
        default=",".join(map(str, DEFAULT_CONTEXTS)),
        help="context sizes in tokens, comma-separated",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per point (median)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every engine this many times, taking turns (A B A B ...), and take each "
        "point's median over all rounds: ratios that hold when the machine's load drifts",
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per point")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads for every engine (0: one per physical core)",
    )
    parser.add_argument("--seed", type=int, default=0, help="input seed")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per engine")
    parser.add_argument(
        "--out", type=Path, default=None, help="write <model>.json and <model>.md (and plots) here"
    )
    parser.add_argument(
        "--plot", action="store_true", help="also write PNG/SVG plots (needs --out)"
    )
    parser.add_argument("--json", action="store_true", help="print the result JSON on stdout")
    parser.add_argument("--list-engines", action="store_true", help="list engine names and exit")
    parser.add_argument(
        "--cold-warm",
        action="store_true",
        help="cold CLI vs warm daemon vs prefix cache (benchmarks/daemon_latency.py)",
    )
    parser.add_argument(
        "--build-peer",
        metavar="PEER",
        default=None,
        help="compile a source-only peer (llama.cpp) for this CPU in the background at the "
        "lowest priority and return at once; run again to see whether it finished",
    )
    parser.add_argument(
        "--gguf",
        metavar="MODEL",
        default=None,
        help="assemble the GGUF a catalog model is converted from (for the llama.cpp peer)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.bench.engines import DEFAULT_ENGINES, available_names, check_names
    from shellfish.bench.spec import Plan, parse_int_list

    if args.build_peer:
        return _build_peer(args.build_peer, env)
    if args.gguf:
        from shellfish.bench.gguf import fetch_model_gguf

        env.stdout.write(f"{fetch_model_gguf(args.gguf, env.paths, dict(env.environ))}\n")
        return 0
    if args.list_engines:
        for name, target in available_names().items():
            env.stdout.write(f"{name}\t{target}\n")
        return 0
    engines = check_names([e for e in (args.engines or ",".join(DEFAULT_ENGINES)).split(",") if e])
    plan = Plan(
        lengths=parse_int_list(args.lengths, "--lengths"),
        contexts=parse_int_list(args.contexts, "--contexts"),
        repeats=args.repeats,
        rounds=args.rounds,
        warmup=args.warmup,
        seed=args.seed,
        threads=args.threads,
        timeout_s=args.timeout,
    )
    plan.validate()
    if args.threads < 0:
        raise UsageError("--threads must be >= 0")
    if args.plot and args.out is None:
        raise UsageError("--plot writes files", hint="add --out DIR")
    from shellfish.bench.models import find_model

    models = [find_model(m, env.environ, env.paths.models) for m in (args.model or ["distilgpt2"])]
    if args.cold_warm:
        return _cold_warm(models, args.repeats, env)
    return _bench(models, engines, plan, args, env)


def _bench(
    models: list[Any], engines: list[str], plan: Any, args: argparse.Namespace, env: Environment
) -> int:
    import json

    from shellfish.bench import report
    from shellfish.bench.harness import run_bench

    results = []
    for model in models:
        result = run_bench(model, engines, plan, environ=env.environ, progress=env.info)
        results.append(result)
        if args.json:
            env.stdout.write(json.dumps(result.to_dict()) + "\n")
        else:
            for table in report.rich_tables(result):
                env.console.print(table)
            env.console.print(report.machine_line(result), style="dim")
        if args.out is not None:
            name = model.name
            result.save(args.out / f"{name}.json")
            (args.out / f"{name}.md").write_text(report.markdown(result))
            if args.plot:
                from shellfish.bench.plots import plot_result

                for path in plot_result(result, args.out):
                    env.info(f"wrote {path}")
    if args.out is not None and args.plot and len(results) > 1:
        from shellfish.bench.plots import plot_load_times

        plot_load_times(results, args.out)
    if not any(result.ran for result in results):
        env.warn("no engine ran: nothing was measured (the reasons are in the table above)")
        return 1
    return 0


def _cold_warm(models: list[Any], runs: int, env: Environment) -> int:
    from shellfish.bench.coldwarm import cold_warm_command

    status = 0
    for model in models:
        command = cold_warm_command(model, runs)
        env.info(f"{model.name}: {' '.join(command)}")
        done = subprocess.run(
            command, stdout=env.stdout, stderr=env.stderr, env=env.environ, check=False
        )
        status = status or done.returncode
    return status


def _build_peer(name: str, env: Environment) -> int:
    """Start the build (or say how the last one went); never waits for it."""
    from shellfish.bench.peer_build import build_status, start_build

    status = build_status(name, env.paths)
    if status.state not in {"building", "done"}:
        status = start_build(name, env.paths, dict(env.environ))
    env.stdout.write(status.describe() + "\n")
    return 1 if status.state in {"failed"} else 0
