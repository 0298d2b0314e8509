"""Figures: latency vs generation length and vs context, per engine; load time per model.

matplotlib is optional (`pip install matplotlib`); without it `PlotsUnavailable` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shellfish.bench.results import BenchResult
from shellfish.errors import ShellfishError


class PlotsUnavailable(ShellfishError):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotsUnavailable("plots need matplotlib", hint="pip install matplotlib") from exc
    return plt


def plot_result(
    result: BenchResult, out_dir: Path, formats: tuple[str, ...] = ("png", "svg")
) -> list[Path]:
    """Two panels for one model: decode ms/token vs length, TTFT vs context."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = result.model.get("name", "model")
    contexts = result.contexts
    if not contexts:
        return []
    c0 = min(contexts)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for e in result.engines:
        if not e.ok:
            continue
        label = f"{e.engine} ({e.precision})"
        lengths = [
            n for n in result.lengths(c0) if n > 1 and e.decode_ms_per_token(c0, n) is not None
        ]
        if lengths:
            left.plot(
                lengths, [e.decode_ms_per_token(c0, n) for n in lengths], marker="o", label=label
            )
        ctx = [c for c in contexts if e.ttft_ms(c) is not None]
        if ctx:
            right.plot(ctx, [e.ttft_ms(c) for c in ctx], marker="o", label=label)
    left.set(
        xscale="log",
        xlabel="generated tokens",
        ylabel="decode ms / token",
        title=f"{name}: decode latency vs length (context {c0})",
    )
    right.set(
        xscale="log",
        xlabel="context tokens",
        ylabel="time to first token (ms)",
        title=f"{name}: prefill vs context",
    )
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ticks = ([n for n in result.lengths(c0) if n > 1], contexts)
    for ax, values in zip((left, right), ticks, strict=True):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        if values:  # label the measured sizes themselves, not powers of ten
            ax.set_xticks(values)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
    left.legend(fontsize=8)
    return _save(plt, fig, out_dir, name, formats)


def plot_load_times(
    results: list[BenchResult], out_dir: Path, formats: tuple[str, ...] = ("png", "svg")
) -> list[Path]:
    """Grouped bars: model load time per engine for each model."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    engines: list[str] = []
    for r in results:
        engines += [e.engine for e in r.engines if e.ok and e.engine not in engines]
    if not engines:
        return []
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(engines)
    for i, name in enumerate(engines):
        values = []
        for r in results:
            e = r.engine(name)
            values.append(e.load_ms if e is not None and e.ok and e.load_ms else 0.0)
        ax.bar([x + i * width for x in range(len(results))], values, width, label=name)
    ax.set_xticks([x + width * (len(engines) - 1) / 2 for x in range(len(results))])
    ax.set_xticklabels([r.model.get("name", "?") for r in results])
    ax.set(ylabel="load ms", title="model load time per engine")
    ax.legend(fontsize=8)
    return _save(plt, fig, out_dir, "load-times", formats)


def _save(plt: Any, fig: Any, out_dir: Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    """Write the figure once per format, then free it."""
    fig.tight_layout()
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, dpi=110)
        paths.append(path)
    plt.close(fig)
    return paths
