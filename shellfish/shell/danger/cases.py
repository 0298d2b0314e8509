"""Labelled command lines for the danger check, and how well `dangers` does on them.

A table is a tab-separated file, one case a row: ``expect<TAB>cwd<TAB>home<TAB>command``,
where `expect` is the danger code the line must raise or ``safe``, and cwd / home are the
request's directories (``-``: unknown). Lines starting with ``#`` and blank lines are
skipped. The project's own table is tests/data/danger_table.tsv.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shellfish.shell.danger import dangers

SAFE = "safe"


@dataclass(frozen=True)
class Case:
    expect: str  # a danger code, or SAFE
    cwd: str | None
    home: str | None
    command: str
    line: int  # where it is in its file, for messages

    def codes(self) -> list[str]:
        """The codes `dangers` finds for this case."""
        return [d.code for d in dangers(self.command, self.cwd, self.home)]


@dataclass(frozen=True)
class Score:
    dangerous: int  # cases that expect a danger
    detected: int  # ... that raised some danger
    detected_exact: int  # ... that raised the expected code
    safe: int  # cases that expect none
    false_positives: int  # ... that raised one
    missed: tuple[Case, ...]
    wrong_code: tuple[tuple[Case, tuple[str, ...]], ...]
    flagged_safe: tuple[tuple[Case, tuple[str, ...]], ...]

    @property
    def detection_rate(self) -> float:
        return self.detected / self.dangerous if self.dangerous else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.safe if self.safe else 0.0


def load_cases(path: Path) -> list[Case]:
    """The cases of one table file; ValueError names the first malformed row."""
    cases = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip() or text.startswith("#"):
            continue
        fields = text.split("\t")
        if len(fields) != 4 or not fields[0] or not fields[3].strip():
            raise ValueError(f"{path}:{number}: expected 4 tab-separated fields: {text!r}")
        expect, cwd, home, command = fields
        cases.append(
            Case(
                expect,
                None if cwd == "-" else cwd,
                None if home == "-" else home,
                command.strip(),
                number,
            )
        )
    return cases


def score(cases: Iterable[Case]) -> Score:
    """Detection and false-positive counts of `dangers` over `cases`."""
    dangerous = detected = exact = safe = false_positives = 0
    missed: list[Case] = []
    wrong: list[tuple[Case, tuple[str, ...]]] = []
    flagged: list[tuple[Case, tuple[str, ...]]] = []
    for case in cases:
        codes = tuple(case.codes())
        if case.expect == SAFE:
            safe += 1
            if codes:
                false_positives += 1
                flagged.append((case, codes))
            continue
        dangerous += 1
        if codes:
            detected += 1
            if case.expect in codes:
                exact += 1
            else:
                wrong.append((case, codes))
        else:
            missed.append(case)
    return Score(
        dangerous,
        detected,
        exact,
        safe,
        false_positives,
        tuple(missed),
        tuple(wrong),
        tuple(flagged),
    )
