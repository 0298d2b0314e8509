"""The client router and the generation commands, end to end on the tiny generated GPT-2.

Invariants: a stale daemon socket never loses a request (it runs in this process instead);
`local` never reaches a remote; `auto` goes remote only when no local model can serve; the CLI
prints only results on stdout and one clear line on stderr for each bad input.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from test_daemon_onnx import NAME, install_tiny_gpt2

from shellfish.cli import main
from shellfish.client import stream
from shellfish.errors import ExitStatus, ModelNotFound
from shellfish.events import Done, Status, Token
from shellfish.request import TaskRequest

GEN = {"max_new_tokens": 6, "temperature": 0.0}


@pytest.fixture
def tiny(causal_models: Path, shellfish_home: Path) -> Path:
    return install_tiny_gpt2(causal_models, shellfish_home)


@pytest.fixture(scope="module")
def server():
    srv = OpenAIServer().start()
    yield srv
    srv.stop()


def _stale_socket(path: Path) -> None:
    """A socket file left behind by a daemon that died (nothing listens on it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_stale_daemon_socket_falls_back_to_this_process(tiny: Path, make_env) -> None:
    env = make_env()
    _stale_socket(env.paths.socket)
    events = list(stream(TaskRequest("prompt", "hello there", model=NAME, generation=GEN), env))
    done = events[-1]
    assert isinstance(done, Done) and done.completion_tokens > 0
    assert "".join(e.text for e in events if isinstance(e, Token)) == done.text
    assert not env.paths.socket.exists()  # the stale socket was cleaned up


def test_local_policy_never_goes_remote(make_env, server) -> None:
    env = make_env(SHELLFISH_REMOTE_POLICY="local", SHELLFISH_REMOTE_BASE_URL=server.base_url)
    before = len(server.received)
    with pytest.raises(ModelNotFound):
        list(stream(TaskRequest("ask", "what is 2+2"), env))
    assert len(server.received) == before


def test_auto_policy_goes_remote_when_no_local_model_serves(make_env, server) -> None:
    server.set(mode="ok", reply="4")
    env = make_env(
        SHELLFISH_REMOTE_POLICY="auto",
        SHELLFISH_REMOTE_BASE_URL=server.base_url,
        OPENAI_API_KEY="sk-x",
    )
    events = list(stream(TaskRequest("ask", "what is 2+2"), env))
    assert any(isinstance(e, Status) and e.data.get("fallback") == "remote" for e in events)
    done = events[-1]
    assert isinstance(done, Done) and done.backend == "remote" and done.text == "4"


def test_prompt_command_prints_only_the_answer_on_stdout(tiny: Path, make_env) -> None:
    env = make_env()
    status = main(["prompt", "--model", NAME, "--max-tokens", "6", "hello there"], env)
    assert status == ExitStatus.OK, env.stderr.getvalue()
    out = env.stdout.getvalue()
    assert out.strip() and "model:" not in out
    # the same request as JSON names the model and carries the same text
    env2 = make_env()
    assert (
        main(["prompt", "--json", "--model", NAME, "--max-tokens", "6", "hello there"], env2) == 0
    )
    payload = json.loads(env2.stdout.getvalue())
    assert payload["model"] == NAME and payload["text"].strip() == out.strip()
    assert payload["tokens"]["completion"] > 0


def test_stdin_is_read_when_no_text_is_given(tiny: Path, make_env) -> None:
    env = make_env("hello there\n")
    assert main(["prompt", "--json", "--model", NAME, "--max-tokens", "3"], env) == 0
    assert json.loads(env.stdout.getvalue())["request"] == "hello there"


def test_unknown_model_is_one_clear_line(tiny: Path, make_env) -> None:
    env = make_env()
    status = main(["prompt", "--model", "no-such-model", "hi"], env)
    assert status == ExitStatus.MODEL
    err = env.stderr.getvalue().strip()
    assert err.startswith("shellfish: error:") and "no-such-model" in err
    assert "\n" not in err and "Traceback" not in err


def test_prompt_longer_than_the_context_is_refused(tiny: Path, make_env) -> None:
    env = make_env()
    status = main(["prompt", "--model", NAME, "word " * 5000], env)
    assert status == ExitStatus.USAGE
    assert "Traceback" not in env.stderr.getvalue()
    assert "prompt" in env.stderr.getvalue().lower()


def test_verbose_after_the_command_names_the_model_on_stderr(tiny: Path, make_env) -> None:
    env = make_env()
    assert main(["prompt", "-v", "--model", NAME, "--max-tokens", "3", "hello there"], env) == 0
    assert f"model: {NAME} (local)" in env.stderr.getvalue()
    assert "model:" not in env.stdout.getvalue()


def test_engine_max_context_caps_the_model_and_config_show_agrees(tiny: Path, make_env) -> None:
    """`engine.max_context` is the number a too-long prompt's error names, and the one
    `config show` prints (the tiny GPT-2 itself reads 1024 tokens)."""
    shown = make_env(SHELLFISH_ENGINE_MAX_CONTEXT="24")
    assert main(["config", "show"], shown) == 0
    assert "max_context = 24" in shown.stdout.getvalue()
    env = make_env(SHELLFISH_ENGINE_MAX_CONTEXT="24")
    long_prompt = " ".join(["word"] * 40)
    assert main(["prompt", "--model", NAME, "--max-tokens", "4", long_prompt], env) == (
        ExitStatus.USAGE
    )
    err = env.stderr.getvalue()
    assert "reads at most 23 (context 24)" in err and "engine.max_context" in err
    assert env.stdout.getvalue() == ""
    # a prompt that fits gets at most what is left of the window
    fits = make_env(SHELLFISH_ENGINE_MAX_CONTEXT="24")
    assert main(["prompt", "--json", "--model", NAME, "--max-tokens", "50", "hello"], fits) == 0
    done = json.loads(fits.stdout.getvalue())
    assert done["tokens"]["prompt"] + done["tokens"]["completion"] <= 24
    assert done["tokens"]["completion"] > 0
