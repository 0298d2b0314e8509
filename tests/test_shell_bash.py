"""The bash integration (bind -x + READLINE_LINE), driven through a real `bash -i` in a pty."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from shell_harness import (
    BASH_SCRIPT,
    FIX_BYTES,
    SUGGEST_BYTES,
    UNDO_BYTES,
    PtyShell,
    require,
    start_bash,
)

from shellfish.shell.context import read_context_file


@pytest.fixture
def shells() -> Iterator[list[PtyShell]]:
    opened: list[PtyShell] = []
    yield opened
    for sh in opened:
        sh.close()


def fake_cli(
    tmp_path: Path, reply: str = "SHELLFISH_CMD\\tls -la\\nSHELLFISH_WARN\\tcareful\\nSHELLFISH_END"
) -> Path:
    fake = tmp_path / "fakecli"
    fake.write_text(
        "#!/bin/sh\n"
        f"cat > '{tmp_path}/cli-stdin'\n"
        f"printf '%s\\n' \"$*\" > '{tmp_path}/cli-args'\n"
        f"printf '{reply}\\n'\n"
    )
    fake.chmod(0o755)
    return fake


def bash(tmp_path: Path, shells: list[PtyShell], **kw: str) -> PtyShell:
    home = tmp_path / "sfhome"
    home.mkdir(exist_ok=True)
    sh = start_bash(tmp_path, home, **kw)
    shells.append(sh)
    return sh


def test_bash_n_accepts_the_script() -> None:
    require("bash")
    proc = subprocess.run(["bash", "-n", str(BASH_SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_suggest_replaces_the_line_and_undo_restores_it(tmp_path, shells) -> None:
    sh = bash(tmp_path, shells, SHELLFISH_CLI=str(fake_cli(tmp_path)))
    sh.send("show every file")
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: sh.buffer() == "ls -la", 10, "the suggestion")
    sh.wait_output("shellfish: warning: careful")
    assert (tmp_path / "cli-stdin").read_text() == "show every file\n"
    assert (tmp_path / "cli-args").read_text().startswith("suggest --shell bash") or (
        tmp_path / "cli-args"
    ).read_text().startswith("widget suggest --shell bash")
    sh.send(UNDO_BYTES)
    sh.wait_for(lambda: sh.buffer() == "show every file", 5, "undo")


def test_fix_after_a_failing_command(tmp_path, shells) -> None:
    sh = bash(
        tmp_path,
        shells,
        SHELLFISH_CLI=str(fake_cli(tmp_path, "SHELLFISH_CMD\\tls /\\nSHELLFISH_END")),
    )
    sh.run("ls /definitely-missing-xyz")
    sh.send(FIX_BYTES)
    sh.wait_for(lambda: sh.buffer() == "ls /", 10, "the fix")
    assert (tmp_path / "cli-stdin").read_text() == "ls /definitely-missing-xyz\n"
    assert '{"last_exit_status":2}' in (tmp_path / "cli-args").read_text()


def test_context_capture_in_bash(tmp_path, shells) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    sh = bash(tmp_path, shells)
    token = "sk-" + "proj-Abc123Def456Ghi789Jkl012Mno345"
    sh.run(f"cd {sub}")
    sh.run("(exit 5)")
    sh.run(f"export OPENAI_API_KEY={token}")
    ctx = tmp_path / "sfhome" / "run" / "context" / f"{sh.pid}.ctx"
    sh.wait_for(ctx.exists, 5, "the context file")
    assert token.encode() not in ctx.read_bytes()
    assert stat.S_IMODE(ctx.stat().st_mode) == 0o600
    session = read_context_file(ctx)
    assert session.shell.startswith("bash")
    assert [(c.cmd, c.exit, c.cwd) for c in session.recent][:2] == [
        (f"cd {sub}", 0, str(tmp_path)),
        ("(exit 5)", 5, str(sub)),
    ]
    assert session.recent[2].cmd == "export OPENAI_API_KEY=[REDACTED]"


def test_empty_line_and_missing_cli_keep_the_line(tmp_path, shells) -> None:
    sh = bash(tmp_path, shells, SHELLFISH_CLI=str(tmp_path / "no-such-cli"))
    sh.send(SUGGEST_BYTES)
    sh.wait_output("type what you want in words first")
    sh.send("do a thing")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("ended without an answer")
    assert sh.buffer() == "do a thing"
    sh.send(b"\x15")
    sh.run("echo alive-$((2+2))")
    assert "alive-4" in sh.text()


def test_bash_redaction_matches_the_reference_table(tmp_path) -> None:
    require("bash")
    from test_redact import HARMLESS, SECRETS

    items = [s for s, _ in SECRETS] + HARMLESS
    data = tmp_path / "items"
    data.write_bytes("\0".join(items).encode() + b"\0")
    script = (
        f"source {BASH_SCRIPT}\n"
        'while IFS= read -r -d "" x; do\n'
        '  _shellfish_redact "$x"; printf "%s\\0" "$REPLY"\n'
        'done < "$1"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i", "-c", script, "bash", str(data)],
        capture_output=True,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
    )
    out = proc.stdout.decode().split("\0")
    assert len(out) >= len(items), proc.stderr.decode()
    for (text, secret), got in zip(SECRETS, out, strict=False):
        assert secret not in got and "[REDACTED]" in got, (text, got)
    for text, got in zip(HARMLESS, out[len(SECRETS) :], strict=False):
        assert got == text


def slow_cli(tmp_path: Path, seconds: float = 30) -> tuple[Path, Path]:
    fake = tmp_path / "slowcli"
    pidfile = tmp_path / "slow.pid"
    fake.write_text(
        f"#!/bin/sh\necho $$ > '{pidfile}'\nsleep {seconds}\n"
        "printf 'SHELLFISH_CMD\\tls -la\\nSHELLFISH_END\\n'\n"
    )
    fake.chmod(0o755)
    return fake, pidfile


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_ctrl_c_cancels_and_keeps_the_words(tmp_path, shells) -> None:
    """Issue 14 item 8: Ctrl+C used to lose the typed words (and left a "thinking..." line)."""
    fake, pidfile = slow_cli(tmp_path)
    sh = bash(tmp_path, shells, SHELLFISH_CLI=str(fake))
    start = sh.mark()
    sh.send("echo kept words")
    sh.send(SUGGEST_BYTES)
    sh.wait_for(pidfile.exists, 10, "the CLI to start")
    sh.wait_output("thinking", since=start)
    # while it thinks, the words are still shown, before the indicator
    assert "echo kept words  [shellfish: thinking" in sh.text()[start:]
    pid = int(pidfile.read_text())
    sh.send(b"\x03")  # Ctrl+C
    sh.wait_output("shellfish: cancelled", since=start)
    sh.wait_for(lambda: _gone(pid), 5, "the CLI to be killed")
    # The words are still on the line and editable, and the line runs whole (a command
    # substitution after the interrupt once made bash split it: `echo` ran, then `kept`).
    start = sh.mark()
    sh.run(" marker-$((40+2))")
    assert "kept words marker-42" in sh.text()[start:]
    sh.send("echo again")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("thinking", since=start)
    sh.send(b"\x03")
    sh.wait_output("shellfish: cancelled", since=start)
    assert sh.buffer() == "echo again"


def test_thinking_indicator_is_erased_and_undo_still_works(tmp_path, shells) -> None:
    fake, _pidfile = slow_cli(tmp_path, 0.5)
    sh = bash(tmp_path, shells, SHELLFISH_CLI=str(fake))
    start = sh.mark()
    sh.send("list everything")
    sh.send(SUGGEST_BYTES)
    sh.wait_for(lambda: sh.buffer() == "ls -la", 10, "the suggestion")
    out = sh.text()[start:]
    # the indicator is drawn, then its screen line is cleared (no permanent "thinking" line)
    shown = out.index("[shellfish: thinking")
    assert "\r\x1b[K" in out[shown:]
    assert "thinking...\r\n" not in out and "thinking... (Ctrl+C cancels)\r\n" not in out
    sh.send(UNDO_BYTES)
    sh.wait_for(lambda: sh.buffer() == "list everything", 5, "undo")


def test_stderr_and_traps_survive_the_bash_widget(tmp_path, shells) -> None:
    fake, _pidfile = slow_cli(tmp_path, 5)
    sh = bash(tmp_path, shells, SHELLFISH_CLI=str(fake), pre="trap 'echo user-int-trap' INT")
    sh.send("anything")
    sh.send(SUGGEST_BYTES)
    sh.wait_output("thinking")
    sh.send(b"\x03")
    sh.wait_output("shellfish: cancelled")
    sh.send(b"\x15")
    start = sh.mark()
    sh.run("ls /sf-missing-dir-xyz; echo status=$?; trap -p INT; echo jobcontrol=${-//[^m]/}")
    out = sh.text()[start:]
    assert "No such file or directory" in out and "status=2" in out
    assert "trap -- 'echo user-int-trap' SIGINT" in out  # the user's own trap is back
    assert "jobcontrol=m" in out  # `set +m` was local to the widget
