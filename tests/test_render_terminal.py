"""Text shown on a terminal is the whole text: render answers into a narrow pseudo-terminal,
read the screen back with a terminal emulator (pyte) and compare with the piped text."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

pyte = pytest.importorskip("pyte", reason="pyte (dev extra) renders the terminal screen")

COLUMNS, ROWS = 40, 120
ANSWER = (
    "The command lists every file in the current directory, including the hidden ones whose "
    "names start with a dot, in the long format with permissions and owners.\n\n"
    "Sizes are shown in human readable units such as kilobytes and megabytes, and the newest "
    "files come first because of the time sort flag at the end of the line.\n\n"
    "Nothing is changed on disk, so it is always safe to run this command anywhere you like."
)

CHILD = textwrap.dedent(
    """
    import sys
    from shellfish.environment import Environment
    from shellfish.events import Done, Token

    answer = open(sys.argv[2], encoding="utf-8").read()
    words = answer.split(" ")
    def events():
        for i, word in enumerate(words):
            yield Token(word if i == 0 else " " + word)
        yield Done([answer], model="tiny", completion_tokens=len(words))

    env = Environment(environ={"SHELLFISH_HOME": sys.argv[3], "TERM": "xterm"})
    mode = sys.argv[1]
    if mode == "repl":
        from shellfish.ui.repl import Repl
        repl = Repl(env, stream=lambda *a, **k: events(), context=lambda: None)
        repl.handle("what does it do?")
    else:
        from shellfish.ui.render import render_stream
        render_stream(events(), env, markdown=(mode == "markdown"))
    """
)


def run_in_pty(mode: str, tmp_path: Path) -> str:
    """Run the child on a COLUMNS x ROWS pty; return the screen as text (rows joined)."""
    answer_file = tmp_path / "answer.txt"
    answer_file.write_text(ANSWER, encoding="utf-8")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(answer_file), str(tmp_path / "home")],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(master)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(b"".join(chunks).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
    return "\n".join(line.rstrip() for line in screen.display)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


@pytest.mark.parametrize("mode", ["markdown", "plain", "repl"])
def test_every_word_of_the_answer_is_on_a_narrow_screen(mode: str, tmp_path: Path) -> None:
    shown = run_in_pty(mode, tmp_path)
    assert _words(ANSWER) == _words(shown)[: len(_words(ANSWER))], shown
    for line in shown.splitlines():
        assert len(line) <= COLUMNS
