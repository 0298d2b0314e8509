"""The REPL in a real terminal (tmux): keys typed while an answer streams are kept for the next
prompt and never echoed into the answer."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

CHILD = textwrap.dedent(
    """
    import sys, time
    from shellfish.environment import Environment
    from shellfish.events import Done, Token
    from shellfish.ui.repl import Repl

    def stream(request, env, *, backend=None, cancel=None):
        words = ("answer to " + request.text + " one two three four five").split()
        for word in words:
            time.sleep(0.3)
            yield Token(word + " ")
        yield Done([" ".join(words)], model="tiny", completion_tokens=len(words))

    env = Environment(environ={"SHELLFISH_HOME": sys.argv[1], "TERM": "xterm"})
    Repl(env, stream=stream, context=lambda: None).run()
    """
)


def _screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def _wait_for(session: str, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared:\n{screen}")


def test_keys_typed_during_an_answer_reach_the_next_prompt(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    session = f"shellfish-test-{tmp_path.name}"
    command = f"{sys.executable} {script} {tmp_path / 'home'}; sleep 60"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "30", command], check=True
    )
    try:
        _wait_for(session, "shellfish>")
        subprocess.run(["tmux", "send-keys", "-t", session, "first", "Enter"], check=True)
        _wait_for(session, "answer to")
        # Typed while the first answer streams: a whole question, then half of another.
        subprocess.run(["tmux", "send-keys", "-t", session, "second", "Enter"], check=True)
        subprocess.run(["tmux", "send-keys", "-t", session, "third typed"], check=True)
        screen = _wait_for(session, "answer to second one two three four five")
        screen = _wait_for(session, "shellfish> third typed")
        lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
        assert lines.count("answer to first one two three four five") == 1, screen
        # Nothing typed was echoed into the live answer (it would leave broken lines behind).
        assert [line for line in lines if line.startswith("answer")] == [
            "answer to first one two three four five",
            "answer to second one two three four five",
        ], screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
