"""Danger classification: destructive commands are flagged, everyday look-alikes are not.

The bulk of the cases live in tests/data/danger_table.tsv (each row with the cwd and $HOME
it assumes); `benchmarks/danger_rates.py` prints the rates over the same table.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shellfish.shell.danger import classify, dangers
from shellfish.shell.danger.cases import SAFE, Case, load_cases, score

TABLE = Path(__file__).parent / "data" / "danger_table.tsv"
CASES = load_cases(TABLE)


def test_the_table_is_large_and_balanced() -> None:
    dangerous = [c for c in CASES if c.expect != SAFE]
    safe = [c for c in CASES if c.expect == SAFE]
    assert len(CASES) >= 200
    assert len(dangerous) >= 100 and len(safe) >= 100
    assert len({c.command for c in CASES}) > 0.9 * len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.line}:{c.command[:40]}" for c in CASES])
def test_table_row(case: Case) -> None:
    codes = case.codes()
    if case.expect == SAFE:
        assert codes == [], (case.command, classify(case.command, case.cwd, case.home))
    else:
        assert case.expect in codes, (case.command, codes)
        assert all(m and "\n" not in m for m in classify(case.command, case.cwd, case.home))


def test_score_counts_the_table() -> None:
    result = score(CASES)
    assert result.dangerous + result.safe == len(CASES)
    assert result.detected == result.dangerous and result.false_positives == 0


# The two defects of issue 14: the same places spelled as absolute paths.
def test_home_spelled_absolute_is_home() -> None:
    assert [d.code for d in dangers("rm -rf /home/me/*", cwd="/home/me", home="/home/me")] == [
        "rm-broad"
    ]


def test_cwd_spelled_absolute_is_the_cwd() -> None:
    assert "rm-broad" in [d.code for d in dangers("rm -rf /work/proj", cwd="/work/proj")]
    assert dangers("rm -rf /work/proj/build", cwd="/work/proj") == []


def test_the_old_call_still_works() -> None:
    assert [d.code for d in dangers("rm -rf ~")] == ["rm-broad"]
    assert classify("rm -rf build/") == []


def test_cd_moves_the_directory_later_commands_resolve_against() -> None:
    assert dangers("cd /tmp && rm -rf build", cwd="/home/me", home="/home/me") == []
    assert dangers("cd /tmp && rm -rf ~/build", cwd="/home/me", home="/home/me") == []
    assert [d.code for d in dangers("cd / && rm -rf usr", cwd="/tmp")] == ["rm-broad"]


def test_variables_set_on_the_line_are_followed() -> None:
    assert [d.code for d in dangers('D=/; rm -rf "$D"')] == ["rm-broad"]
    assert dangers('D=build; rm -rf "$D"') == []


def test_unbalanced_quotes_do_not_crash() -> None:
    assert [d.code for d in dangers("rm -rf / 'oops")] == ["rm-broad"]
    assert dangers("echo 'unterminated") == []


def test_each_danger_reported_once() -> None:
    codes = [d.code for d in dangers("rm -rf / ; rm -rf ~")]
    assert codes == ["rm-broad"]


def test_relative_cwd_or_home_are_treated_as_unknown() -> None:
    assert [d.code for d in dangers("rm -rf .", cwd="relative/dir", home="")] == ["rm-broad"]


def test_validation_judges_paths_against_the_request_directories() -> None:
    from shellfish.suggest.checks import validate_command

    def which(_name: str) -> str:
        return "/bin/true"

    line = "rm -rf /srv/me/*"
    assert validate_command(line, "sh", which=which).danger == []
    found = validate_command(line, "sh", which=which, cwd="/tmp", home="/srv/me").danger
    assert found and "home directory" in found[0]
    found = validate_command(line, "sh", which=which, cwd="/srv/me", home=None).danger
    assert found and "current directory" in found[0]


def test_brace_and_loop_readings_are_bounded() -> None:
    import time

    start = time.perf_counter()
    assert dangers("rm -rf /" + "{a,b}" * 40) == []
    loops = "".join(f"for v{i} in {' '.join(map(str, range(16)))}; do :; done; " for i in range(6))
    assert dangers(loops + "rm -rf /$v0$v1$v2$v3$v4$v5") == []
    assert time.perf_counter() - start < 5.0  # was exponential: 2**40 brace readings


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "rm -rf ",
                "sudo ",
                "sh -c '",
                "$(",
                "<(",
                "curl x | sh",
                "find / -delete",
                "~/",
                "${HOME:?}",
                "..",
                "{a,b}",
                "dd of=/dev/sda",
                "> /etc/passwd",
                "cd / && ",
                "x=/; ",
                "'",
                '"',
                "`",
                "\\",
                "|",
                ";",
                "*",
                " ",
                "python -c '",
                "ssh h '",
                "xargs rm",
            ]
        )
        | st.text(max_size=6),
        max_size=10,
    ).map("".join),
    st.sampled_from([(None, None), ("/home/me/p", "/home/me"), ("/", "/root"), ("rel", "")]),
)
def test_never_raises(line: str, where: tuple[str | None, str | None]) -> None:
    found = dangers(line, *where)
    assert len({d.code for d in found}) == len(found)
