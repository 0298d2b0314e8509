"""The zsh widget end to end: zsh's socket module -> the real daemon -> the ONNX engine.

No test doubles: a real `zsh -f -i` in a pty, `shellfish daemon start` on a real socket, a real
ONNX model (the tiny generated GPT-2 in the default suite; Qwen2.5-Coder under `realmodel`).
The CLI is disabled (SHELLFISH_CLI=false), so an answer can only have come from the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shell_harness import PROMPT, SUGGEST_BYTES, PtyShell, start_zsh
from test_daemon_onnx import NAME, install_tiny_gpt2

from shellfish.history.log import HistoryLog
from shellfish.paths import get_paths


def _daemon(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHELLFISH_")}
    environ.update(SHELLFISH_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "shellfish", "daemon", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
    )


@contextlib.contextmanager
def running_daemon(home: Path, **env: str) -> Iterator[None]:
    started = _daemon(home, "start", **env)
    assert started.returncode == 0, started.stderr
    try:
        yield
    finally:
        _daemon(home, "stop")


def tiny_home(tmp_path: Path, fixtures: Path) -> Path:
    home = tmp_path / "home"
    install_tiny_gpt2(fixtures, home)
    return home


def qwen_home(tmp_path: Path) -> Path:
    """A home of its own in tmp_path whose models and knowledge index are the test cache's
    (symlinked, used read-only): the daemon's socket, log and history stay in tmp_path."""
    from test_realmodel import cache_env, installed

    model = installed("qwen2.5-coder-0.5b-instruct")
    shared = get_paths({"SHELLFISH_HOME": cache_env()["SHELLFISH_HOME"]})
    home = tmp_path / "qwen-home"
    mine = get_paths({"SHELLFISH_HOME": str(home)})
    (mine.models / model.name).parent.mkdir(parents=True)
    (mine.models / model.name).symlink_to(model)
    if shared.knowledge.is_dir():
        mine.knowledge.symlink_to(shared.knowledge)
    return home


@pytest.fixture
def shells() -> Iterator[list[PtyShell]]:
    opened: list[PtyShell] = []
    yield opened
    for sh in opened:
        sh.close()


def _suggest_in_zsh(
    tmp_path: Path, home: Path, shells: list[PtyShell], words: str, *, tmux: bool = False
) -> str:
    sh = start_zsh(tmp_path, home, SHELLFISH_CLI="false", tmux=tmux)
    shells.append(sh)
    sh.send(words)
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: sh.buffer() != words, 240, "the daemon's suggestion in the buffer")
    return sh.buffer()


WORDS = "list all files including hidden ones in long format"


def _suggest_then_fail_in_tmux(tmp_path: Path, home: Path, shells: list[PtyShell]) -> str:
    """Issue 14's "done when": the widget in a real zsh in tmux, through the real daemon, puts
    a suggestion on the line without running it, and a failing command typed afterwards still
    prints its error (the first suggestion used to send zsh's stderr to /dev/null)."""
    line = _suggest_in_zsh(tmp_path, home, shells, WORDS, tmux=True)
    sh = shells[-1]
    assert line.strip() and "\n" not in line
    prompts = sh.text().count(PROMPT)
    time.sleep(0.5)
    assert sh.text().count(PROMPT) == prompts  # nothing ran: no new prompt
    assert sh.buffer() == line  # still on the line, to edit or run
    sh.send(b"\x15")
    start = sh.mark()
    sh.run("ls /sf-missing-dir-xyz; print -u2 err-$((6*7))")
    shown = sh.text()[start:]
    assert "No such file or directory" in shown and "err-42" in shown, shown
    # the exchange went into the history log, though zsh sent it straight to the daemon
    entries = HistoryLog(get_paths({"SHELLFISH_HOME": str(home)}).history_db).search()
    assert entries and entries[0].request == WORDS and entries[0].backend == "daemon"
    return line


def test_widget_gets_its_suggestion_from_the_real_daemon_and_engine(
    tmp_path: Path,
    causal_models: Path,
    shells: list[PtyShell],
) -> None:
    home = tiny_home(tmp_path, causal_models)
    env = {"SHELLFISH_MODELS_SUGGEST": NAME}
    with running_daemon(home, **env):
        line = _suggest_in_zsh(tmp_path, home, shells, "list files")
        assert line.strip() and "\n" not in line
        status = json.loads(_daemon(home, "status", "--json", **env).stdout)
        assert NAME in json.dumps(status)  # the model the daemon loaded to answer


@pytest.mark.realmodel
def test_widget_with_qwen_through_the_daemon(tmp_path: Path, shells: list[PtyShell]) -> None:
    home = qwen_home(tmp_path)
    with running_daemon(home):
        line = _suggest_in_zsh(tmp_path, home, shells, "list all files including hidden ones")
        words = line.split()
        assert words[0] == "ls" and any(w.startswith("-") and "a" in w.lower() for w in words)


def test_done_when_the_widget_in_tmux_suggests_and_stderr_survives(
    tmp_path: Path,
    causal_models: Path,
    shells: list[PtyShell],
) -> None:
    """The mechanics with the tiny model (its words are noise; the Qwen test checks them)."""
    home = tiny_home(tmp_path, causal_models)
    with running_daemon(home, SHELLFISH_MODELS_SUGGEST=NAME):
        _suggest_then_fail_in_tmux(tmp_path, home, shells)


@pytest.mark.realmodel
def test_done_when_with_qwen_in_tmux(tmp_path: Path, shells: list[PtyShell]) -> None:
    """Issue 14's "done when" with the real default model: an `ls -a...` line."""
    home = qwen_home(tmp_path)
    with running_daemon(home):
        line = _suggest_then_fail_in_tmux(tmp_path, home, shells)
    words = line.split()
    assert words[0] == "ls" and any(w.startswith("-") and "a" in w for w in words), line
