"""The REPL, driven by prompt_toolkit's pipe input and a dummy output."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from shellfish.cli import main
from shellfish.environment import Environment
from shellfish.errors import RemoteError
from shellfish.events import Done, Status, Token
from shellfish.ui.repl import Repl, extract_commands

ANSWER = "List them with:\n\n```bash\nls -la\n```\n"


class FakeStream:
    """A stream function recording every request; answers are scripted per text."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}
        self.closed = 0
        self.cancels = []

    def __call__(self, request, env, *, backend=None, cancel=None):
        self.calls.append((request, backend))
        self.cancels.append(cancel)
        answer = self.answers.get(request.text, ANSWER)
        return self._gen(request, answer)

    def _gen(self, request, answer):
        try:
            if isinstance(answer, Exception):
                raise answer
            if answer == "SIGINT":
                yield Token("partial ")
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to this thread
                for _ in range(200):
                    time.sleep(0.01)
                    yield Token("more ")
                yield Done(texts=["never"])
                return
            yield Status("thinking", {"model": "fake"})
            yield Token(answer)
            yield Done(texts=[answer], model="fake")
        finally:
            self.closed += 1


def make_env(tmp_path, **extra):
    environ = {"SHELLFISH_HOME": str(tmp_path / "home"), **extra}
    return Environment(
        stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ=environ
    )


def run_repl(env, keys, stream=None, *, timed=None, **kw):
    """Run a REPL session on `keys`; `timed` keys are sent later from a thread."""
    stream = stream or FakeStream()
    out = io.StringIO()
    kw.setdefault("copy", lambda text: f"copied {text!r}")
    kw.setdefault("run_command", lambda cmd: 0)
    kw.setdefault("context", lambda: {"cwd": "/work"})
    with create_pipe_input() as pipe:
        repl = Repl(
            env,
            stream=stream,
            input=pipe,
            output=DummyOutput(),
            console=Console(file=out, width=120),
            live=False,
            **kw,
        )
        pipe.send_text(keys)
        if timed:

            def later():
                for delay, text in timed:
                    time.sleep(delay)
                    pipe.send_text(text)

            threading.Thread(target=later, daemon=True).start()
        status = repl.run()
    return status, out.getvalue(), stream, repl


def test_question_streams_an_answer_and_keeps_the_conversation(tmp_path):
    env = make_env(tmp_path)
    status, out, stream, repl = run_repl(env, "how do I list files\rand hidden ones?\r\x04")
    assert status == 0
    assert out.count("ls -la") == 2
    first, second = (c[0] for c in stream.calls)
    assert first.task == "chat" and first.options["messages"] == []
    assert first.context == {"cwd": "/work"}
    assert second.options["messages"] == [
        {"role": "user", "content": "how do I list files"},
        {"role": "assistant", "content": ANSWER},
    ]
    assert repl.state.commands == ["ls -la"]


def test_slash_commands(tmp_path):
    env = make_env(tmp_path)
    keys = (
        "/help\r/model tiny-coder\r/temperature 0.4\r/temperature hot\r/context off\r"
        "/local\rhello\r/clear\r/model default\r/bogus\r/remote\rhi\r/exit\r"
    )
    status, out, stream, _repl = run_repl(env, keys)
    assert status == 0
    assert "/temperature  /temperature X" in out  # the help table
    assert "model: tiny-coder" in out and "temperature: 0.4" in out
    assert "temperature must be a number from 0 to 5, not 'hot'" in out
    assert "unknown command /bogus - type /help for the list" in out
    assert "remote.policy is local, so nothing is ever sent" in out  # /remote refused
    hello, hi = stream.calls
    assert hello[0].model == "tiny-coder" and hello[0].generation == {"temperature": 0.4}
    assert hello[0].context is None and hello[1] == "local"
    assert hi[0].model is None and hi[0].options["messages"] == []  # after /clear
    assert hi[1] == "local"  # /remote was refused, the backend stayed local


def test_remote_command_when_allowed(tmp_path):
    env = make_env(
        tmp_path, SHELLFISH_REMOTE_POLICY="auto", SHELLFISH_REMOTE_BASE_URL="http://127.0.0.1:9/v1"
    )
    _, out, stream, _ = run_repl(env, "/remote\rhi\r\x04")
    assert "backend: remote (http://127.0.0.1:9/v1" in out
    assert stream.calls[0][1] == "remote"


def test_context_shows_what_is_attached(tmp_path):
    env = make_env(tmp_path)
    _, out, _, _ = run_repl(
        env,
        "/context\r/context off\r/context\r/context maybe\r\x04",
        context=lambda: {"cwd": "/srv/app", "recent_commands": ["make"]},
    )
    assert '"cwd": "/srv/app"' in out and "context: off" in out
    assert "usage: /context [on|off]" in out


@pytest.fixture
def foreground_sigint():
    """SIGINT raising KeyboardInterrupt, as in a REPL run in the foreground.

    A process that a non-interactive shell starts in the background inherits SIGINT ignored,
    and Python then leaves it ignored; the test must not depend on how pytest was started.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_stream_stops_the_answer_and_keeps_the_session(tmp_path, foreground_sigint):
    env = make_env(tmp_path)
    stream = FakeStream({"long story": "SIGINT"})
    status, out, stream, repl = run_repl(env, "long story\rafter\r\x04", stream)
    assert status == 0
    assert "partial" in out and "(answer stopped)" in out and "never" not in out
    assert stream.cancels[0].is_set()  # the producer was told to stop
    assert stream.closed == 2  # and closed: its cleanup ran
    assert [c[0].text for c in stream.calls] == ["long story", "after"]  # session went on
    assert repl.state.messages[0]["content"] == "after"  # the stopped turn was not kept
    # One notice per Ctrl-C (the renderer's own "[stopped]" used to come too).
    assert (out + env.stderr.getvalue()).count("stopped") == 1


def test_max_tokens_and_the_note_when_an_answer_is_cut(tmp_path):
    env = make_env(tmp_path)

    class Cut(FakeStream):
        def _gen(self, request, answer):
            yield Token("a long")
            yield Done(texts=["a long"], completion_tokens=32, finish_reason="length")

    stream = Cut()
    _, out, stream, _ = run_repl(env, "/max-tokens 32\rtell me\r/max-tokens x\r\x04", stream)
    assert stream.calls[0][0].generation["max_new_tokens"] == 32
    assert "(stopped at 32 tokens, /max-tokens to raise)" in out
    assert "max tokens must be a whole number" in out


def test_ctrl_c_at_the_prompt_clears_the_line(tmp_path):
    env = make_env(tmp_path)
    _, _, stream, _ = run_repl(env, "half typed\x03real question\r\x04")
    assert [c[0].text for c in stream.calls] == ["real question"]


def test_history_is_persisted_across_sessions(tmp_path):
    env = make_env(tmp_path)
    run_repl(env, "first question\r/model tiny\r\x04")
    history_file = env.paths.data / "repl_history"
    assert "first question" in history_file.read_text()
    # A new session: Up Up recalls the question from the previous session.
    _, _, stream, _ = run_repl(make_env(tmp_path), "\x1b[A\x1b[A\r\x04")
    assert [c[0].text for c in stream.calls] == ["first question"]


def test_esc_enter_inserts_a_newline(tmp_path):
    env = make_env(tmp_path)
    _, _, stream, _ = run_repl(env, "line one\x1b\rline two\r\x04")
    assert stream.calls[0][0].text == "line one\nline two"


def test_tab_completes_slash_commands(tmp_path):
    env = make_env(tmp_path)
    # Completion runs asynchronously, so Enter is sent once it had time to finish.
    _, out, _, _ = run_repl(env, "", timed=[(0.3, "/hel"), (0.3, "\t"), (0.5, "\r"), (0.3, "\x04")])
    assert "/temperature  /temperature X" in out


def test_run_asks_first_and_warns_about_danger(tmp_path):
    env = make_env(tmp_path)
    ran = []
    stream = FakeStream({"wipe": "```bash\nrm -rf /\n```", "list": "ls -la"})
    _, out, _, _ = run_repl(
        env,
        "wipe\r/run\rn\rlist\r/run\ry\r/run 3\r\x04",
        stream,
        run_command=lambda cmd: ran.append(cmd) or 0,
    )
    assert "$ rm -rf /" in out and "warning:" in out and "not run" in out
    assert ran == ["ls -la"]
    assert "pick a command from 1 to 1" in out


def test_edit_then_run_and_copy(tmp_path):
    env = make_env(tmp_path)
    ran = []
    keys = "list\r/edit\r\x15ls -lh\ry\r/copy\r\x04"  # Ctrl-U clears the prefilled command
    _, out, _, _ = run_repl(env, keys, run_command=lambda cmd: ran.append(cmd) or 0)
    assert ran == ["ls -lh"]
    assert "copied 'ls -la'" in out


def test_run_without_a_suggestion(tmp_path):
    _, out, _, _ = run_repl(make_env(tmp_path), "/run\r/copy\r\x04")
    assert out.count("no suggested command yet") == 2


def test_errors_are_one_line_and_the_session_goes_on(tmp_path):
    env = make_env(tmp_path)
    stream = FakeStream({"boom": RemoteError("cannot connect to X", hint="is it running?")})
    status, out, stream, _ = run_repl(env, "boom\rok\r\x04", stream)
    assert status == 0
    assert "error: cannot connect to X - is it running?" in out
    assert "Traceback" not in out and len(stream.calls) == 2


def test_extract_commands():
    assert extract_commands("```bash\n$ ls -la\n```\nor\n```sh\ndf -h\n```") == ["ls -la", "df -h"]
    assert extract_commands("`git status`") == ["git status"]
    assert extract_commands("```python\nprint(1)\n```") == []
    assert extract_commands("two\nlines of prose") == []


def test_repl_cli_needs_a_terminal(tmp_path):
    env = make_env(tmp_path)
    assert main([], env) == 2
    assert "the REPL needs a terminal" in env.stderr.getvalue()


@pytest.mark.parametrize("keys", ["\x04", "/exit\r", "/quit\r"])
def test_ways_to_leave(tmp_path, keys):
    status, _, stream, _ = run_repl(make_env(tmp_path), keys)
    assert status == 0 and stream.calls == []


def test_repl_danger_warnings_judge_paths_from_where_the_repl_runs(tmp_path) -> None:
    """An absolute spelling of the home directory is as dangerous as `~` (issue 14 item 2)."""
    from shellfish.ui.repl import danger_warnings

    home = str(tmp_path / "me")
    assert danger_warnings(f"rm -rf {home}/*", cwd=str(tmp_path), home=home)
    assert not danger_warnings("rm -rf ./build", cwd=home, home=home)
