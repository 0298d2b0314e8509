"""One command for the README numbers: every bench model x every engine, tables and plots.

    .venv/bin/python benchmarks/make_models.py        # once: random-weight models (~15 min)
    .venv/bin/python benchmarks/run_all.py            # the run (see --help for --quick/--long)

Writes full results (JSON, markdown, PNG/SVG per model) into benchmarks/results/ (git-ignored)
and the committed summary into docs/bench/: `results.md` (machine line + one table set per
model) and one SVG per model plus `load-times.svg`. A model that is not built or installed is
listed as skipped; an engine that is not installed shows up as "not measured" with the reason.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shellfish.bench import report  # noqa: E402
from shellfish.bench.engines import DEFAULT_ENGINES  # noqa: E402
from shellfish.bench.harness import run_bench  # noqa: E402
from shellfish.bench.models import find_model  # noqa: E402
from shellfish.bench.results import BenchResult  # noqa: E402
from shellfish.bench.spec import Plan, parse_int_list  # noqa: E402
from shellfish.errors import ShellfishError  # noqa: E402

MODELS = (
    "distilgpt2",
    "gpt2",
    "flan-t5-small",
    "flan-t5-base",
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
)
# Precision variants on top of the default engine set (item 3: fp32 vs int8 vs int4).
ENGINES = (*DEFAULT_ENGINES, "shellfish-int8", "shellfish-int4", "ort-genai-int4", "optimum-int8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--lengths", default="1,16,64,256")
    parser.add_argument("--contexts", default="16,128,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=1, help="engines take turns this many times (bench --rounds)"
    )
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core")
    parser.add_argument("--long", action="store_true", help="add the 1000-token generation")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 models, short")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "bench")
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rebuild tables and plots from --out/*.json",
    )
    args = parser.parse_args(argv)
    if args.render:
        return _render(args.out, args.docs)

    lengths = parse_int_list(args.lengths, "--lengths")
    contexts = parse_int_list(args.contexts, "--contexts")
    models = [m for m in args.models.split(",") if m]
    repeats = args.repeats
    if args.long:
        lengths = (*lengths, 1000)
    if args.quick:
        models = ["distilgpt2", "smollm2-135m-instruct"]
        lengths, contexts, repeats = (1, 16, 64), (16, 128), 2
    plan = Plan(
        lengths=lengths,
        contexts=contexts,
        repeats=repeats,
        rounds=args.rounds,
        threads=args.threads,
    )
    engines = [e for e in args.engines.split(",") if e]

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    results: list[BenchResult] = []
    skipped: list[str] = []
    for name in models:
        try:
            model = find_model(name)
        except ShellfishError as exc:
            skipped.append(f"{name}: {exc}")
            progress(f"skipping {name}: {exc}")
            continue
        result = run_bench(model, engines, plan, progress=progress)
        results.append(result)
        result.save(args.out / f"{name}.json")
        (args.out / f"{name}.md").write_text(report.markdown(result))
        _plots(result, args.out)
    if not results:
        progress("no bench model found: run benchmarks/make_models.py first")
        return 1
    _load_plot(results, args.out)
    how = "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    text = _summary(results, skipped, time.monotonic() - started, how)
    (args.out / "results.md").write_text(text)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "results.md").write_text(text)
    for svg in args.out.glob("*.svg"):
        shutil.copy2(svg, args.docs / svg.name)
    print(text)
    progress(f"done in {time.monotonic() - started:.0f}s; full results in {args.out}")
    return 0


def _render(out: Path, docs: Path) -> int:
    from shellfish.bench.results import load_result

    order = {name: i for i, name in enumerate(MODELS)}
    files = sorted(out.glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    results = [load_result(path) for path in files]
    if not results:
        print(f"no results in {out}", file=sys.stderr)
        return 1
    for result in results:
        name = result.model.get("name", "model")
        (out / f"{name}.md").write_text(report.markdown(result))
        _plots(result, out)
    _load_plot(results, out)
    text = _summary(results, [], None, " (tables re-rendered from the saved JSON)")
    (out / "results.md").write_text(text)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.md").write_text(text)
    for svg in out.glob("*.svg"):
        shutil.copy2(svg, docs / svg.name)
    print(text)
    return 0


def _plots(result: BenchResult, out: Path) -> None:
    try:
        from shellfish.bench.plots import plot_result

        plot_result(result, out)
    except ShellfishError as exc:
        print(f"no plots: {exc}", file=sys.stderr)


def _load_plot(results: list[BenchResult], out: Path) -> None:
    try:
        from shellfish.bench.plots import plot_load_times

        plot_load_times(results, out)
    except ShellfishError as exc:
        print(f"no plots: {exc}", file=sys.stderr)


def _summary(
    results: list[BenchResult], skipped: list[str], seconds: float | None, how: str = ""
) -> str:
    took = f" in {seconds / 60:.1f} min" if seconds is not None else ""
    lines = [
        "## Speed: shellfish vs the peers",
        "",
        f"Machine: {report.machine_line(results[0])}. Produced by "
        f"`python benchmarks/run_all.py{how}`{took}.",
        "",
        "Random-weight models have the real architectures (speed does not depend on weight "
        "values); greedy agreement on random weights is only a rough precision signal.",
        "",
    ]
    for result in results:
        name = result.model.get("name", "?")
        lines += [report.markdown(result), f"![{name}]({name}.svg)", ""]
    lines += ["![load times](load-times.svg)", ""]
    if skipped:
        lines += ["Models not run:", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
