"""validate_command: programs exist, the line parses in a real shell, dangers are listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shellfish.suggest.checks import Validation, missing_programs, programs, validate_command

needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")


def test_programs_of_a_pipeline() -> None:
    assert programs("sudo -u bob FOO=1 grep -r x . | sort | uniq -c && echo done") == [
        "grep",
        "sort",
        "uniq",
        "echo",
    ]
    assert programs("if true; then ls; fi") == ["true", "ls"]


def test_existing_and_missing_programs() -> None:
    assert missing_programs("ls -la | grep x") == []
    assert missing_programs("definitely-not-a-program-xyz --flag") == [
        "definitely-not-a-program-xyz"
    ]
    assert missing_programs("cd /tmp && export A=1 && echo $A") == []  # builtins
    assert missing_programs("$EDITOR file") == []  # resolved at run time


def test_paths_are_checked_as_files(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    assert missing_programs("./run.sh", cwd=str(tmp_path)) == ["./run.sh"]  # not executable
    script.chmod(0o755)
    assert missing_programs("./run.sh", cwd=str(tmp_path)) == []


def test_which_is_injectable() -> None:
    assert missing_programs("foo | bar", which=lambda w: "/x" if w == "foo" else None) == ["bar"]


@needs_zsh
def test_parse_errors_come_from_zsh() -> None:
    v = validate_command("ls | | grep x")
    assert not v.ok
    assert any("does not parse in zsh" in p for p in v.problems), v.problems
    assert validate_command("for f in *.txt; do echo $f; done").ok


def test_bash_parse_check() -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    v = validate_command("if true; then echo x", shell="bash")
    assert any("does not parse in bash" in p for p in v.problems), v.problems


def test_danger_is_reported_but_does_not_fail_validation() -> None:
    v = validate_command("rm -rf ~")
    assert v.ok and v.danger and v.warnings[0].startswith("danger: ")


def test_empty_command_and_extra_checks() -> None:
    assert validate_command("   ") == Validation(ok=False, problems=["the command is empty"])
    v = validate_command("ls --frobnicate", checks=[lambda c: ["ls: unknown flag --frobnicate"]])
    assert not v.ok and v.problems == ["ls: unknown flag --frobnicate"]


def test_missing_program_is_a_problem() -> None:
    v = validate_command("nosuchprog-qq -x")
    assert not v.ok
    assert v.problems == ["nosuchprog-qq: command not found on this machine"]


def test_nested_programs_are_checked_too() -> None:
    # the commands xargs, find -exec, $(...) and sh -c run must exist as well
    assert programs("find . -exec frob {} \\; | xargs -0 zap -q && echo $(quux) && sh -c 'k'") == [
        "find",
        "frob",
        "xargs",
        "zap",
        "echo",
        "quux",
        "sh",
        "k",
    ]
    which = {"find": "/x", "xargs": "/x", "sh": "/x"}.get
    assert missing_programs("find . -exec frob {} \\; | xargs zap", which=which) == [
        "frob",
        "zap",
    ]


def test_flags_are_read_by_the_parser() -> None:
    from shellfish.suggest.checks import flag_problems

    docs = {"cut": {"-d", "-f"}, "frob": {"-a"}, "xargs": {"-I", "-0"}, "sudo": set()}
    known = docs.get
    assert flag_problems("cut -d' ' -f2 notes.txt", known) == []  # `-d ` is -d with a space
    assert flag_problems("xargs -I{} frob -a {}", known) == []  # -I takes `{}`
    # the command xargs runs is checked; a wrapper's options are not the program's
    assert flag_problems("xargs -0 frob -z", known) == [
        "frob: unknown flag -z (not in the local man page / --help)"
    ]
    assert flag_problems("sudo -u bob frob -a -q", known) == [
        "frob: unknown flag -q (not in the local man page / --help)"
    ]


@needs_zsh
def test_several_lines_are_checked_together_and_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    from shellfish.suggest import checks

    lines = ["ls | | grep x", "echo ok", "for f in *; do echo $f", "echo ok", "true && false"]
    alone = {line: checks.parse_errors([line], "zsh")[line] for line in set(lines)}
    checks._parsed.clear()
    started = []
    real = subprocess.Popen

    def counting(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(args)
        return real(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "Popen", counting)
    together = checks.parse_errors(lines, "zsh")
    assert together == alone  # the same verdicts as one at a time
    assert together["ls | | grep x"] and together["echo ok"] is None
    assert len(started) == 4  # one shell per distinct line
    assert checks.parse_errors(lines[::-1], "zsh") == alone
    assert len(started) == 4  # remembered: no shell started again


def test_a_shell_that_hangs_gives_no_verdict_and_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shellfish.suggest import checks

    fake = tmp_path / "bin" / "zsh"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 5\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.setattr(checks, "PARSE_TIMEOUT_S", 0.3)
    assert checks.parse_errors(["ls", "ls -l"], "zsh") == {"ls": None, "ls -l": None}
    assert not any(exe == str(fake) for exe, _ in checks._parsed)  # a killed shell is no answer
