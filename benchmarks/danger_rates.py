"""Detection and false-positive rates of the danger check over labelled tables.

Each row of a table names a command line, the cwd and $HOME it runs with, and the danger
code it must raise (or `safe`); see `shellfish.shell.danger.cases` for the format.

    python benchmarks/danger_rates.py [TABLE.tsv ...] [--list]
    python benchmarks/danger_rates.py --commands FILE [--cwd DIR] [--home DIR] [--list]

Without a table it reads tests/data/danger_table.tsv. --list prints every miss, wrong code
and false positive. --commands reads one unlabelled command per line (NL2Bash's `.cm`
files, say) and prints how many are flagged, by code.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from shellfish.shell.danger import dangers
from shellfish.shell.danger.cases import load_cases, score

DEFAULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "danger_table.tsv"


def report_table(table: Path, show: bool) -> None:
    result = score(load_cases(table))
    print(f"{table}:")
    print(
        f"  detection: {result.detected}/{result.dangerous} = {result.detection_rate:.1%}"
        f" (expected code: {result.detected_exact}/{result.dangerous})"
    )
    print(
        f"  false positives: {result.false_positives}/{result.safe}"
        f" = {result.false_positive_rate:.1%}"
    )
    if show:
        for case in result.missed:
            print(f"  missed     {case.expect:18} {case.command}")
        for case, codes in result.wrong_code:
            print(f"  wrong code {case.expect:18} {case.command}  -> {','.join(codes)}")
        for case, codes in result.flagged_safe:
            print(f"  flagged    {','.join(codes):18} {case.command}")


def report_commands(path: Path, cwd: str, home: str, show: bool) -> None:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    flagged = [(line, [d.code for d in dangers(line, cwd, home)]) for line in lines]
    flagged = [(line, codes) for line, codes in flagged if codes]
    share = len(flagged) / len(lines) if lines else 0.0
    print(f"{path}: {len(flagged)}/{len(lines)} flagged = {share:.1%} (cwd {cwd}, home {home})")
    counts = Counter(code for _line, codes in flagged for code in codes)
    print("  " + ", ".join(f"{code} {n}" for code, n in counts.most_common()))
    if show:
        for line, codes in flagged:
            print(f"  {','.join(codes):18} {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("tables", nargs="*", type=Path)
    parser.add_argument("--list", action="store_true", help="print each case judged wrong")
    parser.add_argument("--commands", type=Path, help="unlabelled commands, one per line")
    parser.add_argument("--cwd", default="/home/me/proj", help="cwd for --commands")
    parser.add_argument("--home", default="/home/me", help="$HOME for --commands")
    args = parser.parse_args()
    if args.commands:
        report_commands(args.commands, args.cwd, args.home, args.list)
    for table in args.tables or ([] if args.commands else [DEFAULT]):
        report_table(table, args.list)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
