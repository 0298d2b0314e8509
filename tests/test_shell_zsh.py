"""The zsh integration, driven through a real `zsh -f -i` in a pty.

The widget talks to FakeDaemon (a real Unix socket speaking the `lines` reply format) or, with
no daemon, to a fake slow CLI; both stand in for the model so the mechanics are deterministic.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shell_harness import (
    FIX_BYTES,
    PROMPT,
    SUGGEST_BYTES,
    UNDO_BYTES,
    ZSH_SCRIPT,
    FakeDaemon,
    PtyShell,
    require,
    start_zsh,
)

from shellfish.shell.context import read_context_file
from shellfish.shell.markers import escape_payload


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "sfhome"
    h.mkdir()
    return h


@pytest.fixture
def shells() -> Iterator[list[PtyShell]]:
    opened: list[PtyShell] = []
    yield opened
    for sh in opened:
        sh.close()


@pytest.fixture
def daemons() -> Iterator[list[FakeDaemon]]:
    opened: list[FakeDaemon] = []
    yield opened
    for d in opened:
        d.close()


def socket_path(home: Path) -> Path:
    return home / "run" / "daemon.sock"


def answer(command: str, *warnings: str, delay: float = 0.0) -> Any:
    def script(_request: dict[str, Any]) -> list[Any]:
        steps: list[Any] = [delay] if delay else []
        steps.append(f"SHELLFISH_CMD\t{escape_payload(command)}")
        steps += [f"SHELLFISH_WARN\t{escape_payload(w)}" for w in warnings]
        steps.append("SHELLFISH_END")
        return steps

    return script


def zsh(tmp_path: Path, home: Path, shells: list[PtyShell], **kw: Any) -> PtyShell:
    sh = start_zsh(tmp_path, home, **kw)
    shells.append(sh)
    return sh


def test_zsh_n_accepts_the_script() -> None:
    require("zsh")
    proc = subprocess.run(["zsh", "-n", "-f", str(ZSH_SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_suggestion_replaces_the_buffer_and_undo_restores_it(
    tmp_path, home, shells, daemons
) -> None:
    daemon = FakeDaemon(socket_path(home), answer("ls -la", "danger: nothing really"))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.run("(exit 3)")
    sh.send("list all files")
    sh.send(SUGGEST_BYTES)
    assert daemon.replied.wait(10)
    sh.wait_for(lambda: sh.buffer() == "ls -la", 10, "the suggestion in the buffer")
    sh.wait_output("warning: danger: nothing really")
    request = daemon.requests[0]
    assert request["v"] == 1 and request["cmd"] == "generate" and request["reply_format"] == "lines"
    assert request["request"]["task"] == "suggest"
    assert request["request"]["text"] == "list all files"
    context = request["request"]["context"]
    assert context["cwd"] == str(tmp_path) and context["shell"].startswith("zsh ")
    assert context["recent"][-1]["cmd"] == "(exit 3)" and context["recent"][-1]["exit"] == 3
    # standard zsh undo brings the words back
    sh.send(UNDO_BYTES)
    sh.wait_for(lambda: sh.buffer() == "list all files", 5, "undo")
    # the suggestion is not in history: only what was run is
    sh.send(b"\x15")  # kill the line
    sh.run("fc -ln -5")
    assert "ls -la" not in sh.text().split("fc -ln -5")[-1]


def test_typing_during_a_slow_request_is_kept(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), answer("find . -size +100M", delay=1.5))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.send("big files")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("thinking")
    for ch in " here please":
        sh.send(ch)
        time.sleep(0.02)
    # every key was handled while the request was still pending
    assert not daemon.replied.is_set()
    assert daemon.requests[0]["request"]["text"] == "big files"
    assert sh.buffer() == "big files here please"
    assert daemon.replied.wait(10)
    sh.wait_output("suggestion: find . -size +100M")
    assert sh.buffer() == "big files here please"


def test_pressing_the_key_again_cancels(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), answer("sleep 1", delay=8))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.send("wait a bit")
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: daemon.requests, 10, "the request")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("cancelled")
    sh.wait_for(lambda: daemon.hangups == 1, 5, "the daemon to see the hang-up")
    assert sh.buffer() == "wait a bit"
    sh.send(b"\x15")
    sh.run("echo still-$((40+2))")
    assert "still-42" in sh.text()


def test_fix_last_command(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), answer("ls /"))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.run("ls /definitely-missing-dir-xyz")
    sh.send(FIX_BYTES)
    sh.wait_for(lambda: sh.buffer() == "ls /", 10, "the fix in the buffer")
    request = daemon.requests[0]["request"]
    assert request["task"] == "fix"
    assert request["text"] == "ls /definitely-missing-dir-xyz"
    # the key the prompt reads (issue 14 item 4: the widget sent `exit_status`), and the PATH
    # the nearest installed programs are looked up on
    assert request["context"]["last_exit_status"] == 2
    assert request["context"]["path"] == os.environ["PATH"]
    # after a successful command there is nothing to fix and nothing is sent
    sh.send(b"\x15")
    sh.run("true")
    sh.send(FIX_BYTES)
    sh.wait_output("nothing to fix")
    assert len(daemon.requests) == 1


def test_context_capture_records_exit_codes_cwd_and_redacts(tmp_path, home, shells) -> None:
    sub = tmp_path / "sub dir"
    sub.mkdir()
    sh = zsh(tmp_path, home, shells)
    token = "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"
    sh.run(f"cd '{sub}'")
    sh.run("(exit 7)")
    sh.run("sleep 0.3")
    sh.run(f"export GITHUB_TOKEN={token}")
    ctx_file = home / "run" / "context" / f"{sh.pid}.ctx"
    sh.wait_for(ctx_file.exists, 5, "the context file")
    raw = ctx_file.read_bytes()
    assert token.encode() not in raw
    assert stat.S_IMODE(ctx_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(ctx_file.parent.stat().st_mode) == 0o700
    session = read_context_file(ctx_file)
    assert session.shell.startswith("zsh")
    cmds = [(c.cmd, c.exit, c.cwd) for c in session.recent]
    assert cmds[0] == (f"cd '{sub}'", 0, str(tmp_path))
    assert cmds[1] == ("(exit 7)", 7, str(sub))
    assert session.recent[2].duration_ms >= 250
    assert cmds[3][0] == "export GITHUB_TOKEN=[REDACTED]"


def test_context_is_bounded_and_can_be_turned_off(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), answer("true"))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells, pre="SHELLFISH_CONTEXT_MAX=3")
    for i in range(5):
        sh.run(f": {i}")
    session = read_context_file(home / "run" / "context" / f"{sh.pid}.ctx")
    assert [c.cmd for c in session.recent] == [": 2", ": 3", ": 4"]
    sh.run("SHELLFISH_CONTEXT_CAPTURE=0")
    sh.run(": secret-ish")
    sh.send("anything")
    sh.send(SUGGEST_BYTES)
    assert daemon.replied.wait(10)
    assert daemon.requests[0]["request"]["context"] is None
    session = read_context_file(home / "run" / "context" / f"{sh.pid}.ctx")
    assert ": secret-ish" not in [c.cmd for c in session.recent]


def test_without_a_daemon_the_cli_answers(tmp_path, home, shells) -> None:
    fake = tmp_path / "fakecli"
    seen = tmp_path / "cli-stdin"
    fake.write_text(
        "#!/bin/sh\n"
        f"cat > '{seen}'\n"
        f"printf '%s\\n' \"$*\" > '{seen}.args'\n"
        "sleep 0.5\n"
        "printf 'SHELLFISH_CMD\\tdu -sh *\\nSHELLFISH_WARN\\tfrom the cli\\nSHELLFISH_END\\n'\n"
    )
    fake.chmod(0o755)
    sh = zsh(tmp_path, home, shells, SHELLFISH_CLI=str(fake))
    sh.send("how big is everything")
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: sh.buffer() == "du -sh *", 10, "the CLI's suggestion")
    sh.wait_output("warning: from the cli")
    assert seen.read_text() == "how big is everything\n"
    assert (tmp_path / "cli-stdin.args").read_text().startswith("widget suggest --shell zsh")


def test_slow_cli_is_killed_on_cancel(tmp_path, home, shells) -> None:
    fake = tmp_path / "slowcli"
    pidfile = tmp_path / "slow.pid"
    fake.write_text(f"#!/bin/sh\necho $$ > '{pidfile}'\nexec sleep 30\n")
    fake.chmod(0o755)
    sh = zsh(tmp_path, home, shells, SHELLFISH_CLI=str(fake))
    sh.send("slow one")
    sh.send(SUGGEST_BYTES)
    sh.wait_for(pidfile.exists, 10, "the CLI to start")
    time.sleep(0.1)
    pid = int(pidfile.read_text())
    sh.send(SUGGEST_BYTES)
    sh.wait_output("cancelled")

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie is gone for our purposes
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
        except OSError:
            return True

    sh.wait_for(gone, 5, "the CLI process to be killed")
    assert sh.buffer() == "slow one"


def test_missing_cli_and_no_daemon_keeps_the_line(tmp_path, home, shells) -> None:
    sh = zsh(tmp_path, home, shells, SHELLFISH_CLI=str(tmp_path / "no-such-shellfish"))
    sh.send("do something")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("ended without an answer")
    assert sh.buffer() == "do something"
    sh.send(b"\x15")
    sh.run("echo usable-$((1+1))")
    assert "usable-2" in sh.text()


def test_daemon_dying_mid_request_keeps_the_line(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), lambda _r: [0.3, None])
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.send("anything at all")
    sh.send(SUGGEST_BYTES)
    assert daemon.replied.wait(10)
    sh.wait_output("ended without an answer")
    assert sh.buffer() == "anything at all"


def test_daemon_error_is_shown(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(
        socket_path(home),
        lambda _r: [
            "SHELLFISH_ERR\tmodel 'x' is not installed - run `shellfish models pull x`",
            "SHELLFISH_END",
        ],
    )
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.send("list files")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("is not installed")
    assert sh.buffer() == "list files"


def test_empty_buffer_sends_nothing(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), answer("true"))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.send("   ")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("type what you want in words first")
    time.sleep(0.2)
    assert daemon.requests == []
    assert sh.buffer() == "   "


def test_multiline_buffer_and_multiline_reply(tmp_path, home, shells, daemons) -> None:
    reply = 'for f in *.log; do\n\tgzip "$f"  # back\\slash\ndone'
    daemon = FakeDaemon(socket_path(home), answer(reply))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    sh.send("compress the logs")
    sh.send(b"\x1b\r")  # Alt+Enter: a literal newline in the buffer
    sh.send('one "by" one\\')
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: sh.buffer() == reply, 10, "the multi-line suggestion")
    assert daemon.requests[0]["request"]["text"] == 'compress the logs\none "by" one\\'


def test_non_utf8_bytes_and_a_10000_character_buffer(tmp_path, home, shells, daemons) -> None:
    daemon = FakeDaemon(socket_path(home), answer("echo ok"))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    # invalid UTF-8 reaches the line through history (typed bytes are cleaned by zle itself)
    sh.run("print -s -- $': caf\\xe9-\\xff-end'")
    sh.send(b"\x10")  # Ctrl+P: the history line
    sh.wait_for(lambda: sh.buffer().endswith("-end"), 10, "the history line")
    sh.run("")  # run it, so the context records it
    sh.send(b"\x10")
    long_text = ("x" * 99 + " ") * 100  # 10,000 characters
    sh.send(long_text.encode() + "é".encode() + b"\x16\x01")  # Ctrl+V Ctrl+A: a literal ^A
    sh.wait_for(lambda: len(sh.buffer()) >= 10_000, 20, "the long buffer")
    sh.send(SUGGEST_BYTES)
    assert daemon.replied.wait(20)
    request = daemon.requests[0]["request"]
    assert request["text"] == ": caf\ufffd-\ufffd-end" + long_text + "é\x01"
    recent = request["context"]["recent"][-1]["cmd"]
    assert recent == ": caf\ufffd-\ufffd-end"
    sh.wait_for(lambda: sh.buffer() == "echo ok", 10, "the suggestion")
    # the Python reader copes with the same bytes in the context file
    session = read_context_file(home / "run" / "context" / f"{sh.pid}.ctx")
    assert session.recent[-1].cmd.endswith("-end")


def test_zsh_redaction_matches_the_reference_table(tmp_path) -> None:
    require("zsh")
    from test_redact import HARMLESS, SECRETS

    items = [s for s, _ in SECRETS] + HARMLESS
    data = tmp_path / "items"
    data.write_bytes("\0".join(items).encode())
    script = (
        f"source {ZSH_SCRIPT}\n"
        'local -a items; items=("${(@0)$(<$1)}")\n'
        'for x in $items; do _shellfish_redact "$x"; print -rn -- "$REPLY"$\'\\0\'; done\n'
    )
    proc = subprocess.run(
        ["zsh", "-f", "-c", script, "zsh", str(data)],
        capture_output=True,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
        check=True,
    )
    out = proc.stdout.decode().split("\0")[: len(items)]
    for (text, secret), got in zip(SECRETS, out, strict=False):
        assert secret not in got and "[REDACTED]" in got, (text, got)
    for text, got in zip(HARMLESS, out[len(SECRETS) :], strict=False):
        assert got == text


def test_json_escaping_round_trips(tmp_path) -> None:
    require("zsh")
    samples = ['a "quoted" \\ back', "tab\there\nnew\rcr", "ctl\x01\x02\x1f\x7f", "ünï €😀", ""]
    data = tmp_path / "items"
    data.write_bytes("\0".join(samples).encode() + b"\0bad\xff\xc3byte")
    script = (
        f"source {ZSH_SCRIPT}\n"
        'local -a items; items=("${(@0)$(<$1)}")\n'
        'for x in $items; do _shellfish_json_str "$x"; print -r -- "$REPLY"; done\n'
    )
    proc = subprocess.run(
        ["zsh", "-f", "-c", script, "zsh", str(data)],
        capture_output=True,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
        check=True,
    )
    decoded = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    # zsh's "${(@0)...}" drops the empty element; compare the rest
    assert decoded[: len(samples) - 1] == samples[:-1]
    assert decoded[-1] == "bad\ufffd\ufffdbyte"


def test_prompt_sentinel_used(tmp_path, home, shells) -> None:
    sh = zsh(tmp_path, home, shells)
    sh.run("echo hi")
    assert PROMPT in sh.text()


def _daemon(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHELLFISH_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "shellfish", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_end_to_end_through_the_real_daemon(tmp_path, home, shells) -> None:
    """The real daemon on a real socket, reached by zsh's socket module (no model installed
    in this fresh SHELLFISH_HOME: the daemon's own error must come back and the line stay)."""
    started = _daemon(home, "start")
    assert started.returncode == 0, started.stderr
    try:
        sh = zsh(tmp_path, home, shells, SHELLFISH_CLI="false")  # the CLI must not be needed
        sh.send("list files")
        sh.send(SUGGEST_BYTES)
        sh.wait_output("shellfish models pull", 60)
        assert sh.buffer() == "list files"
    finally:
        _daemon(home, "stop")


# ---------------------------------------------------------------------------------------------
# The shell must stay whole after every way a request can end (issue 14 item 1: one `exec
# {fd}<&- 2>/dev/null` sent zsh's own stderr to /dev/null after the first suggestion).


def assert_stderr_reaches_the_terminal(sh: PtyShell) -> None:
    sh.send(b"\x15")  # whatever the widget left on the line
    start = sh.mark()
    # The arithmetic is expanded by the shell, so "to-stderr-42" on screen can only be output.
    sh.run("print -u2 to-stderr-$((6*7)); ls /sf-missing-dir-xyz; print status=$?")
    out = sh.text()[start:]
    assert "to-stderr-42" in out, out
    assert "No such file or directory" in out, out
    assert "status=2" in out
    start = sh.mark()
    sh.run("print -r -- fd2=${$(readlink /proc/$$/fd/2):-none}")
    assert "fd2=/dev/null" not in sh.text()[start:]


def _end_by_answer(sh: PtyShell, since: int) -> None:
    sh.wait_for(lambda: sh.buffer() == "ls -la", 10, "the suggestion")


def _end_by_cancel(sh: PtyShell, since: int) -> None:
    sh.wait_output("thinking", since=since)
    time.sleep(0.2)
    sh.send(SUGGEST_BYTES)
    sh.wait_output("cancelled", since=since)


def _end_by_message(needle: str) -> Any:
    def end(sh: PtyShell, since: int) -> None:
        sh.wait_output(needle, since=since)

    return end


_SCRIPTS: dict[str, Any] = {
    "answer": answer("ls -la"),
    "cancel": answer("ls -la", delay=8),
    "error": lambda _r: ["SHELLFISH_ERR\tno model", "SHELLFISH_END"],
    "daemon-died": lambda _r: [0.2, None],
    "empty-answer": lambda _r: ["SHELLFISH_END"],
}
_ENDS: dict[str, Any] = {
    "answer": _end_by_answer,
    "cancel": _end_by_cancel,
    "error": _end_by_message("no model"),
    "daemon-died": _end_by_message("ended without an answer"),
    "empty-answer": _end_by_message("no suggestion came back"),
}


@pytest.mark.parametrize("how", sorted(_SCRIPTS))
def test_stderr_survives_every_daemon_request_ending(tmp_path, home, shells, daemons, how) -> None:
    daemon = FakeDaemon(socket_path(home), _SCRIPTS[how])
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells)
    for _ in range(2):  # twice: the first request must not break the second either
        start = sh.mark()
        sh.send("list all files")
        sh.send(SUGGEST_BYTES)
        _ENDS[how](sh, start)
        assert_stderr_reaches_the_terminal(sh)


@pytest.mark.parametrize("how", ["answer", "cancel", "error"])
def test_stderr_survives_every_cli_request_ending(tmp_path, home, shells, how) -> None:
    fake = tmp_path / "fakecli"
    reply = {
        "answer": "printf 'SHELLFISH_CMD\\tls -la\\nSHELLFISH_END\\n'",
        "cancel": "exec sleep 30",
        "error": "echo 'Traceback: broken install' >&2; exit 1",
    }[how]
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\n{reply}\n")
    fake.chmod(0o755)
    sh = zsh(tmp_path, home, shells, SHELLFISH_CLI=str(fake))
    sh.send("list all files")
    sh.send(SUGGEST_BYTES)
    {**_ENDS, "error": _end_by_message("broken install")}[how](sh, 0)
    assert_stderr_reaches_the_terminal(sh)


def test_fix_widget_leaves_stderr_alone(tmp_path, home, shells, daemons) -> None:
    daemons.append(FakeDaemon(socket_path(home), answer("ls /")))
    sh = zsh(tmp_path, home, shells)
    sh.run("ls /definitely-missing-dir-xyz")
    sh.send(FIX_BYTES)
    sh.wait_for(lambda: sh.buffer() == "ls /", 10, "the fix")
    assert_stderr_reaches_the_terminal(sh)


def test_no_bare_exec_redirects_a_standard_stream() -> None:
    """`exec ... 2>/dev/null` (or 1>, <) changes the shell itself; only braces keep it local."""
    import re

    from shell_harness import BASH_SCRIPT

    bare = re.compile(r"^\s*exec\s+[^#]*?(?<![&{\w])[012]?[<>]+\s*(?:/dev/null|&[012])")
    for script in (ZSH_SCRIPT, BASH_SCRIPT):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            if line.lstrip().startswith("exec $cli"):
                continue  # inside the slow path's subshell: it is the CLI's own stderr
            assert not bare.search(line), f"{script.name}:{number}: {line}"


def test_fix_without_context_capture_still_sends_the_exit_status(
    tmp_path, home, shells, daemons
) -> None:
    daemon = FakeDaemon(socket_path(home), answer("git status"))
    daemons.append(daemon)
    sh = zsh(tmp_path, home, shells, pre="SHELLFISH_CONTEXT_CAPTURE=0")
    sh.run("gti status")
    sh.send(FIX_BYTES)
    sh.wait_for(lambda: sh.buffer() == "git status", 10, "the fix")
    context = daemon.requests[0]["request"]["context"]
    assert context == {"last_exit_status": 127, "path": os.environ["PATH"]}


def test_fix_through_the_cli_slow_path_sends_valid_json(tmp_path, home, shells) -> None:
    fake = tmp_path / "fakecli"
    fake.write_text(
        "#!/bin/sh\n"
        f"cat > '{tmp_path}/cli-stdin'\n"
        f"printf '%s\\n' \"$6\" > '{tmp_path}/cli-extra'\n"
        "printf 'SHELLFISH_CMD\\tgit status\\nSHELLFISH_END\\n'\n"
    )
    fake.chmod(0o755)
    sh = zsh(tmp_path, home, shells, SHELLFISH_CLI=str(fake))
    sh.run("gti status")
    sh.send(FIX_BYTES)
    sh.wait_for(lambda: sh.buffer() == "git status", 10, "the fix")
    extra = json.loads((tmp_path / "cli-extra").read_text())
    assert extra["last_exit_status"] == 127 and extra["path"] == os.environ["PATH"]
