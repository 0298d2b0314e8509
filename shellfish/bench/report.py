"""Tables for a bench result: rich renderables for the terminal and markdown for the README.

Ratios are peer time / shellfish time for the same metric: above 1.00 shellfish is faster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shellfish.bench.results import BenchResult, EngineResult, mean_agreement

if TYPE_CHECKING:
    from rich.table import Table

QUALITY_REFERENCES = ("transformers", "shellfish", "optimum", "ct2-fp32", "ort-genai")


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def headline_length(result: BenchResult, context: int) -> int | None:
    """The decode length the summary quotes: the longest measured one up to 256 tokens."""
    lengths = [n for n in result.lengths(context) if n > 1]
    short = [n for n in lengths if n <= 256]
    return max(short) if short else (max(lengths) if lengths else None)


def summary_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-engine summary of the engines that ran."""
    c0, n = summary_point(result)
    ref = result.reference
    header = [
        "engine",
        "prec",
        "load ms",
        "TTFT ms",
        "ms/tok",
        "tok/s",
        "RSS MB",
        "x decode",
        "x TTFT",
        "load avg",
    ]
    rows: list[list[str]] = []
    for e in result.engines:
        if not e.ok:
            continue
        decode = e.decode_ms_per_token(c0, n) if n else None
        ttft = e.ttft_ms(c0)
        rows.append(
            [
                e.engine,
                e.precision,
                _ms(e.load_ms, 0),
                _ms(ttft),
                _ms(decode, 2),
                _ms(e.tokens_per_s(c0, n) if n else None),
                _ms(e.peak_rss_mb, 0),
                _ratio(
                    result.ratio(e, decode, ref.decode_ms_per_token(c0, n) if ref and n else None)
                ),
                _ratio(result.ratio(e, ttft, ref.ttft_ms(c0) if ref else None)),
                _load(e.load_avg),
            ]
        )
    return header, rows


def _load(load_avg: list[float] | None) -> str:
    return "-" if not load_avg else " -> ".join(f"{x:.1f}" for x in load_avg)


def ratios_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Every metric of every peer as peer / shellfish (above 1.00x shellfish is better)."""
    ref = result.reference
    if ref is None:
        return [], []
    c0, n = summary_point(result)
    contexts = result.contexts
    header = ["engine", "load", *[f"TTFT ctx {c}" for c in contexts], "decode", "RSS"]
    rows = []
    for e in result.engines:
        if not e.ok or e.engine == ref.engine:
            continue
        cells = [
            result.ratio(e, e.load_ms, ref.load_ms),
            *[result.ratio(e, e.ttft_ms(c), ref.ttft_ms(c)) for c in contexts],
            result.ratio(
                e,
                e.decode_ms_per_token(c0, n) if n else None,
                ref.decode_ms_per_token(c0, n) if n else None,
            ),
            result.ratio(e, e.peak_rss_mb, ref.peak_rss_mb),
        ]
        texts = [_ratio(c) or "-" for c in cells]
        spread = _round_spread(e, ref, c0, n) if n else None
        if spread is not None and cells[-2] is not None:
            texts[-2] += f" ({spread[0]:.2f}-{spread[1]:.2f})"
        rows.append([e.engine, *texts])
    return header, rows


def _round_spread(
    engine: EngineResult, ref: EngineResult, context: int, n: int
) -> tuple[float, float] | None:
    """Lowest and highest of the per-round decode ratios (peer round k / shellfish round k)."""
    ours, theirs = ref.round_decode_ms(context, n), engine.round_decode_ms(context, n)
    if not ours or not theirs or len(ours) != len(theirs) or not all(ours):
        return None
    ratios = [t / o for t, o in zip(theirs, ours, strict=True)]
    return min(ratios), max(ratios)


def ratios_caption(result: BenchResult) -> str:
    ref = result.reference
    rounds = _rounds(result.plan)
    spread = (
        f"; decode in brackets: the lowest and highest of the {rounds} rounds' own ratios"
        if rounds > 1
        else ""
    )
    return f"peer / {ref.engine if ref else 'shellfish'}; above 1.00x shellfish is better{spread}"


def summary_point(result: BenchResult) -> tuple[int, int | None]:
    contexts = result.contexts
    c0 = min(contexts) if contexts else 0
    return c0, headline_length(result, c0) if contexts else None


def summary_caption(result: BenchResult) -> str:
    c0, n = summary_point(result)
    return (
        f"TTFT at a {c0}-token context; decode ms/token and tok/s over {n} generated tokens; "
        "RSS = peak resident memory of the engine's process; x = peer time / shellfish "
        "time (above 1.00x shellfish is faster)"
    )


def skipped_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Engines that did not produce numbers, and why (missing peers are reported, not faked)."""
    rows = [[e.engine, e.status, e.reason] for e in result.engines if not e.ok]
    return ["engine", "status", "reason"], rows


def lengths_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Decode ms/token by generation length at the smallest context."""
    c0 = min(result.contexts) if result.contexts else 0
    lengths = [n for n in result.lengths(c0) if n > 1]
    header = ["engine"] + [f"{n} tok" for n in lengths]
    rows = [
        [e.engine] + [_ms(e.decode_ms_per_token(c0, n), 2) for n in lengths]
        for e in result.engines
        if e.ok
    ]
    return header, rows


def contexts_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Time to first token (prefill) by context size."""
    contexts = result.contexts
    header = ["engine"] + [f"ctx {c}" for c in contexts]
    rows = [[e.engine] + [_ms(e.ttft_ms(c)) for c in contexts] for e in result.engines if e.ok]
    return header, rows


def quality_reference(result: BenchResult) -> EngineResult | None:
    """The fp32 engine the others are compared with; without fp32, the best precision there."""
    ran = [e for e in result.engines if e.ok and e.quality_ids]
    for precisions in (("fp32",), ("fp16", "int8", "int4")):
        for name in QUALITY_REFERENCES:
            for e in ran:
                if e.engine == name and e.precision in precisions:
                    return e
    return ran[0] if ran else None


def quality_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Greedy-token agreement of every engine with the reference (the precision cost)."""
    ref = quality_reference(result)
    prompts = len(ref.quality_ids or []) if ref else 0
    tokens = len((ref.quality_ids or [[]])[0]) if ref else 0
    # A reference that repeats one token (random T5 weights do) cannot tell precisions apart.
    constant = bool(ref and ref.quality_ids and len({t for r in ref.quality_ids for t in r}) == 1)
    against = f"{ref.engine} {ref.precision}" if ref else "-"
    header = [
        "engine",
        "precision",
        f"agreement with {against} ({prompts} prompts x {tokens} tok)",
        "same first token",
    ]
    rows = []
    for e in result.engines:
        if not e.ok or e.quality_ids is None:
            continue
        scores = mean_agreement(ref.quality_ids, e.quality_ids) if ref else None
        if scores is None:
            rows.append([e.engine, e.precision, "-", "-"])
            continue
        cell = f"{scores[0]:.0%}"
        if constant:
            cell += " (reference repeats one token: uninformative)"
        rows.append([e.engine, e.precision, cell, f"{scores[1]:.0%}"])
    return header, rows


def rich_table(title: str, header: list[str], rows: list[list[str]], caption: str = "") -> Table:
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        show_lines=False,
        caption=caption or None,
        caption_justify="left",
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def rich_tables(result: BenchResult) -> list[Table]:
    """The tables for a terminal; only the "not measured" one when no engine ran."""
    name = result.model.get("name", "?")
    out = []
    if result.ran:
        out += [
            rich_table(f"{name}: summary", *summary_rows(result), caption=summary_caption(result)),
            rich_table(f"{name}: decode ms/token by generation length", *lengths_rows(result)),
            rich_table(f"{name}: time to first token (ms) by context", *contexts_rows(result)),
        ]
    header, rows = ratios_rows(result)
    if rows:
        out.append(rich_table(f"{name}: ratios", header, rows, caption=ratios_caption(result)))
    header, rows = quality_rows(result)
    if rows:
        out.append(rich_table(f"{name}: precision cost", header, rows))
    header, rows = skipped_rows(result)
    if rows:
        out.append(rich_table(f"{name}: not measured", header, rows))
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(result: BenchResult) -> str:
    name = result.model.get("name", "?")
    weights = " (random weights)" if result.model.get("random_weights") else ""
    parts = [f"### {name}{weights}"]
    if result.ran:
        parts += [
            "",
            markdown_table(*summary_rows(result)),
            "",
            summary_caption(result) + ".",
            "",
            "Decode ms/token by generation length:",
            "",
            markdown_table(*lengths_rows(result)),
            "",
            "Time to first token (ms) by context:",
            "",
            markdown_table(*contexts_rows(result)),
        ]
    else:
        parts += ["", "No engine ran."]
    header, rows = ratios_rows(result)
    if rows:
        parts += ["", f"Ratios ({ratios_caption(result)}):", "", markdown_table(header, rows)]
    header, rows = quality_rows(result)
    if rows:
        parts += ["", "Precision cost:", "", markdown_table(header, rows)]
    header, rows = skipped_rows(result)
    if rows:
        parts += ["", "Not measured:", "", markdown_table(header, rows)]
    return "\n".join(parts) + "\n"


def machine_line(result: BenchResult) -> str:
    m = result.machine
    plan = result.plan
    return (
        f"{m.get('cpu', m.get('processor', '?'))}, {m.get('cores_physical', '?')} physical cores, "
        f"{m.get('memory_gb', '?')} GB; {m.get('platform', '')}; threads per engine "
        f"{plan.get('threads') or 'one per physical core'}; load average at start "
        f"{m.get('load_avg', '?')}; median of {plan.get('repeats')} runs after "
        f"{plan.get('warmup')} warm-up{_turns(plan)}"
    )


def _rounds(plan: dict[str, Any]) -> int:
    return int(plan.get("rounds") or 1)


def _turns(plan: dict[str, Any]) -> str:
    rounds = _rounds(plan)
    return "" if rounds == 1 else f", in each of {rounds} rounds with the engines taking turns"
