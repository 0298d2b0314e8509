"""The fix key's Python side: what is known about a failed command, and the fix candidates.

Deterministic: a PATH made of a temporary directory with a few fake programs, files in
`tmp_path`, and the scripted runner of test_suggest standing in for the model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_suggest import ScriptedRunner, world  # noqa: F401  (fixture)

from shellfish.config import Settings
from shellfish.events import Done, Error
from shellfish.paths import get_paths
from shellfish.request import TaskRequest
from shellfish.suggest import run_suggest
from shellfish.suggest.failure import analyse, distance, exit_meaning, nearest, rewrites
from shellfish.suggest.prompts import build_messages

PROGRAMS = ("git", "ls", "sh", "grep", "tar", "python3", "docker", "apt-get")


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, str]:
    """A context for a fix request on a machine with PROGRAMS installed, cwd = tmp_path/work."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in PROGRAMS:
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "README.md").write_text("hi\n")
    (work / "archive.tar").write_bytes(b"")
    script = work / "build.sh"
    script.write_text("#!/usr/bin/env bash\necho built\n")
    script.chmod(0o644)
    return {"cwd": str(work), "path": str(bin_dir), "shell": "zsh 5.9", "os": "linux-gnu"}


def test_distance_counts_a_swap_as_one_edit() -> None:
    assert distance("gti", "git") == 1
    assert distance("sl", "ls") == 1
    assert distance("grpe", "grep") == 1
    assert distance("kitten", "sitting") == 3
    assert distance("", "ls") == 2


def test_nearest_prefers_anagrams_then_the_same_first_letter() -> None:
    assert nearest("sl", ["sh", "ls", "sg", "xl"]) == ["ls", "sg", "sh"]
    assert nearest("gti", ["git", "gtk", "tig"]) == ["git", "gtk"]
    assert nearest("pyhton3", ["python3", "python", "perl"]) == ["python3", "python"]
    assert nearest("zzzz", ["ls", "git"]) == []  # nothing close: no guess


def test_exit_meanings() -> None:
    assert exit_meaning(127) == "command not found"
    assert "not executable" in exit_meaning(126)
    assert exit_meaning(130) == "killed by SIGINT (Ctrl+C)"
    assert exit_meaning(1) == exit_meaning(2) == ""  # depends on the program: no claim


@pytest.mark.parametrize(
    ("command", "status", "fixed"),
    [
        ("gti status", 127, "git status"),
        ("sl -la", 127, "ls -la"),
        ("grpe foo README.md", 127, "grep foo README.md"),
        ("sudo apt-gett install x", 127, "sudo apt-get install x"),
        ("ls -la | gerp md", 127, "ls -la | grep md"),
        ("tar -xf archiv.tar", 2, "tar -xf archive.tar"),
        ("ls READEM.md", 2, "ls README.md"),
        ("./build.sh --fast", 126, "bash ./build.sh --fast"),
    ],
)
def test_rewrites_follow_from_the_facts(machine, command, status, fixed) -> None:
    failure = analyse(command, {**machine, "last_exit_status": status})
    assert rewrites(failure)[0] == fixed


def test_description_for_the_prompt(machine) -> None:
    failure = analyse("gti status", {**machine, "last_exit_status": 127})
    assert failure.describe() == [
        "Exit status: 127 (command not found).",
        "`gti`: command not found. Installed programs with similar names: git.",
    ]
    failure = analyse("tar -xf missing.tar", {**machine, "last_exit_status": 2})
    assert failure.describe() == ["Exit status: 2.", "`missing.tar` does not exist."]
    assert rewrites(failure) == []  # no name close to it: nothing mechanical to offer
    # the old widget's key is still understood
    assert analyse("x", {"exit_status": 1}).exit_status == 1


def test_fix_prompt_reads_what_the_widget_sends(machine) -> None:
    """Issue 14 item 4: the widget sent `exit_status`, the prompt read `last_exit_status`."""
    request = TaskRequest(
        task="fix", text="gti status", context={**machine, "last_exit_status": 127}
    )
    user = build_messages(request)[-1]["content"]
    assert "This command failed: gti status" in user
    assert "Exit status: 127 (command not found)." in user
    assert "similar names: git." in user


def _fix(runner: ScriptedRunner, tmp_path: Path, text: str, context: dict[str, object]):
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path / "home")})
    request = TaskRequest(task="fix", text=text, context=context)
    return list(run_suggest(request, runner, settings=Settings(), paths=paths, mode="full"))


def test_the_failed_command_is_never_the_fix(machine, tmp_path) -> None:
    # the model repeats the typo: the mechanical correction wins, the repeat is gone
    events = _fix(ScriptedRunner(["gti  status"]), tmp_path, "gti status", machine)
    done = events[-1]
    assert isinstance(done, Done)
    assert done.texts[0] == "git status"
    assert all(" ".join(t.split()) != "gti status" for t in done.texts)
    # a different model answer in the same group stays behind the correction
    events = _fix(ScriptedRunner(["git stat"]), tmp_path, "gti status", machine)
    assert isinstance(events[-1], Done) and events[-1].texts[0] == "git status"


def test_no_fix_found_when_only_the_same_line_comes_back(machine, tmp_path) -> None:
    events = _fix(ScriptedRunner(["tar -xf missing.tar"]), tmp_path, "tar -xf missing.tar", machine)
    error = events[-1]
    assert isinstance(error, Error) and error.code == "no_fix"
    assert "no fix found" in error.message
    assert not any(isinstance(e, Done) for e in events)


def test_model_fix_is_kept_when_nothing_is_mechanical(machine, tmp_path) -> None:
    events = _fix(ScriptedRunner(["ls -l"]), tmp_path, "ls --longg", machine)
    assert isinstance(events[-1], Done) and events[-1].texts[0] == "ls -l"


def test_unreadable_file_suggests_sudo(machine, tmp_path) -> None:
    secret = Path(machine["cwd"]) / "secret.txt"
    secret.write_text("x")
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("running as root: every file is readable")
        failure = analyse("cat secret.txt", {**machine, "last_exit_status": 1})
        assert failure.unreadable == ["secret.txt"]
        assert rewrites(failure) == ["sudo cat secret.txt"]
    finally:
        secret.chmod(0o600)


def test_retrieved_commands_do_not_vote_on_a_fix(world) -> None:  # noqa: F811
    """They match the words of the broken line, not its intent: on the fix benchmark they
    outvoted the correction (`grpe foo README.md` became `find . -name README.md`)."""
    runner = ScriptedRunner(["frob -a hidden/"])
    request = TaskRequest(task="fix", text="frob -a hidden", context={"last_exit_status": 1})
    events = list(run_suggest(request, runner, settings=Settings(), paths=world, mode="full"))
    done = events[-1]
    assert isinstance(done, Done) and done.texts == ["frob -a hidden/"]
    assert len(runner.prompts) == 1  # and no second call to adapt a retrieved command
    assert "frob -a ." in runner.prompts[0]  # the example is still in the prompt
    # a suggestion still gets the vote
    events = list(
        run_suggest(
            TaskRequest(task="suggest", text="frobnicate hidden files"),
            ScriptedRunner(["frob -a hidden/"]),
            settings=Settings(),
            paths=world,
            mode="full",
        )
    )
    assert "frob -a ." in events[-1].texts


def test_path_scan_is_cached_until_a_directory_changes(machine) -> None:
    from shellfish.suggest.failure import path_programs

    first = path_programs(machine["path"])
    assert "git" in first and "newprog" not in first
    assert path_programs(machine["path"]) is first  # the cache answered
    exe = Path(machine["path"]) / "newprog"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    os.utime(machine["path"], (time.time() + 5, time.time() + 5))  # coarse clocks
    assert "newprog" in path_programs(machine["path"])
