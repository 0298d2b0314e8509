"""Detection and false-positive rates of the danger check over labelled tables.

Each row of a table names a command line, the cwd and $HOME it runs with, and the danger
code it must raise (or `safe`); see `shellfish.shell.danger.cases` for the format.

    python benchmarks/danger_rates.py [TABLE.tsv ...] [--list]

Without a table it reads tests/data/danger_table.tsv. --list prints every miss, wrong code
and false positive.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shellfish.shell.danger.cases import load_cases, score

DEFAULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "danger_table.tsv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", type=Path, default=[DEFAULT])
    parser.add_argument("--list", action="store_true", help="print each case judged wrong")
    args = parser.parse_args()
    for table in args.tables:
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
        if args.list:
            for case in result.missed:
                print(f"  missed     {case.expect:18} {case.command}")
            for case, codes in result.wrong_code:
                print(f"  wrong code {case.expect:18} {case.command}  -> {','.join(codes)}")
            for case, codes in result.flagged_safe:
                print(f"  flagged    {','.join(codes):18} {case.command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
