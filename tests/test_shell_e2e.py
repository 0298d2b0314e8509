"""The zsh widget end to end: zsh's socket module -> the real daemon -> the ONNX engine.

No test doubles: a real `zsh -f -i` in a pty, `shellfish daemon start` on a real socket, a real
ONNX model (the tiny generated GPT-2 in the default suite; Qwen2.5-Coder under `realmodel`).
The CLI is disabled (SHELLFISH_CLI=false), so an answer can only have come from the daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from shell_harness import SUGGEST_BYTES, PtyShell, start_zsh
from test_daemon_onnx import NAME, install_tiny_gpt2


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


@pytest.fixture
def shells() -> Iterator[list[PtyShell]]:
    opened: list[PtyShell] = []
    yield opened
    for sh in opened:
        sh.close()


def _suggest_in_zsh(tmp_path: Path, home: Path, shells: list[PtyShell], words: str) -> str:
    sh = start_zsh(tmp_path, home, SHELLFISH_CLI="false")
    shells.append(sh)
    sh.send(words)
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: sh.buffer() != words, 240, "the daemon's suggestion in the buffer")
    return sh.buffer()


def test_widget_gets_its_suggestion_from_the_real_daemon_and_engine(
    tmp_path: Path,
    causal_models: Path,
    shells: list[PtyShell],
) -> None:
    home = tmp_path / "home"
    install_tiny_gpt2(causal_models, home)
    env = {"SHELLFISH_MODELS_SUGGEST": NAME}
    started = _daemon(home, "start", **env)
    assert started.returncode == 0, started.stderr
    try:
        line = _suggest_in_zsh(tmp_path, home, shells, "list files")
        assert line.strip() and "\n" not in line
        status = json.loads(_daemon(home, "status", "--json", **env).stdout)
        assert NAME in json.dumps(status)  # the model the daemon loaded to answer
    finally:
        _daemon(home, "stop")


@pytest.mark.realmodel
def test_widget_with_qwen_through_the_daemon(tmp_path: Path, shells: list[PtyShell]) -> None:
    from test_realmodel import cache_env, installed

    installed("qwen2.5-coder-0.5b-instruct")
    home = Path(cache_env()["SHELLFISH_HOME"])
    started = _daemon(home, "start", SHELLFISH_HISTORY_ENABLED="false")
    assert started.returncode == 0, started.stderr
    try:
        line = _suggest_in_zsh(tmp_path, home, shells, "list all files including hidden ones")
        words = line.split()
        assert words[0] == "ls" and any(w.startswith("-") and "a" in w.lower() for w in words)
    finally:
        _daemon(home, "stop")
