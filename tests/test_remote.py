"""The remote fallback against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from shellfish.cli import main
from shellfish.config import RemoteSettings
from shellfish.environment import Environment
from shellfish.errors import RemoteError, ShellfishError
from shellfish.events import Done, Status, Token
from shellfish.paths import get_paths
from shellfish.remote.backend import RemoteBackend
from shellfish.request import TaskRequest

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import OpenAIServer

SECRETS = (
    "sk-proj-Zx9QwErTyUiOp1234567890abcdEFGH",
    "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "AKIAIOSFODNN7EXAMPLE",
    "hunter2-very-secret",
)
SECRET_TEXT = (
    f"deploy with OPENAI_API_KEY={SECRETS[0]} and token {SECRETS[1]}, "
    f"AWS_ACCESS_KEY_ID={SECRETS[2]}, mysql -u root --password={SECRETS[3]}"
)


@pytest.fixture(scope="module")
def server():
    srv = OpenAIServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def paths(tmp_path):
    return get_paths({"SHELLFISH_HOME": str(tmp_path / "home")})


def make(server, paths, **settings) -> RemoteBackend:
    base = {"policy": "auto", "base_url": server.base_url, "timeout_s": 5.0, "max_retries": 2}
    base.update(settings)
    return RemoteBackend(RemoteSettings(**base), {"OPENAI_API_KEY": "sk-test-key"}, paths=paths)


def request(text: str = "list files", task: str = "suggest", **kw) -> TaskRequest:
    return TaskRequest(task=task, text=text, **kw)


def test_streaming_answer_is_typed_events(server, paths):
    server.set(mode="ok", reply="ls -la --color", pieces=4)
    events = list(make(server, paths).stream(request()))
    tokens = [e.text for e in events if isinstance(e, Token)]
    done = events[-1]
    assert isinstance(done, Done)
    assert len(tokens) == 4 and "".join(tokens) == "ls -la --color" == done.text
    assert done.backend == "remote" and done.model == "test-model" and done.finish_reason == "stop"
    assert done.total_ms >= done.first_token_ms > 0
    sent = server.chat_requests[0].json()
    assert sent["stream"] is True and sent["model"] == "gpt-4o-mini"
    assert sent["messages"][-1] == {"role": "user", "content": "list files"}
    assert server.chat_requests[0].headers["authorization"] == "Bearer sk-test-key"


def test_non_streaming_answer(server, paths):
    server.set(mode="ok", reply="du -sh *")
    events = list(make(server, paths).stream(request(), streaming=False))
    assert [e.text for e in events if isinstance(e, Token)] == ["du -sh *"]
    done = events[-1]
    assert isinstance(done, Done) and done.prompt_tokens == 11 and done.completion_tokens == 3
    assert server.chat_requests[0].json()["stream"] is False


def test_generation_settings_are_sent(server, paths):
    server.set(mode="ok")
    req = request(generation={"temperature": 0.3, "max_new_tokens": 40, "stop": ["\n"]})
    list(make(server, paths, model="my-model").stream(req))
    sent = server.chat_requests[0].json()
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 40 and sent["stop"] == ["\n"]
    assert sent["model"] == "my-model"


def test_401_is_a_clear_error(server, paths):
    server.set(mode="401")
    with pytest.raises(RemoteError) as info:
        list(make(server, paths).stream(request()))
    assert "401" in str(info.value) and "OPENAI_API_KEY" in str(info.value)
    assert len(server.chat_requests) == 1  # a refused key is not retried


def test_429_is_retried_then_succeeds(server, paths):
    server.set(mode="429", failures=2, retry_after_ms=30)
    started = time.monotonic()
    events = list(make(server, paths, max_retries=3).stream(request()))
    retries = [e for e in events if isinstance(e, Status) and "retry" in e.data]
    assert [e.data["retry"] for e in retries] == [1, 2]
    assert all("429" in e.message for e in retries)
    assert isinstance(events[-1], Done) and events[-1].extra["retries"] == 2
    assert len(server.chat_requests) == 3
    assert time.monotonic() - started >= 0.06  # the server's Retry-After was honoured


def test_429_gives_up_after_max_retries_with_backoff(server, paths):
    server.set(mode="429", failures=100, retry_after_ms=None)
    delays: list[float] = []
    backend = make(server, paths, max_retries=2)
    backend._sleep = delays.append  # record the backoff instead of waiting it out
    with pytest.raises(RemoteError) as info:
        list(backend.stream(request()))
    assert "rate limited (HTTP 429)" in str(info.value) and "2 retries" in str(info.value)
    assert len(server.chat_requests) == 3
    assert len(delays) == 2 and 0.3 <= delays[0] <= 0.7 and 0.7 <= delays[1] <= 1.3


def test_500_then_ok_non_streaming(server, paths):
    server.set(mode="500", failures=1)
    events = list(make(server, paths).stream(request(), streaming=False))
    assert isinstance(events[-1], Done) and events[-1].text == "ls -la"
    assert len(server.chat_requests) == 2


def test_timeout_is_a_clear_error(server, paths):
    server.set(mode="hang")
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        list(make(server, paths, timeout_s=0.5, max_retries=0).stream(request()))
    assert "within 0.5 s" in str(info.value) and "remote.timeout_s" in str(info.value)
    assert time.monotonic() - started < 5


def test_dropped_connection_mid_stream(server, paths):
    server.set(mode="drop", reply="abcdefghij", pieces=5)
    seen: list[str] = []
    with pytest.raises(RemoteError) as info:
        for event in make(server, paths).stream(request()):
            if isinstance(event, Token):
                seen.append(event.text)
    assert "closed the connection in the middle of the answer" in str(info.value)
    assert seen == ["ab", "cd"]  # what arrived before the drop was streamed
    assert len(server.chat_requests) == 1  # never retried after text was shown


@pytest.mark.parametrize("streaming", [True, False])
def test_malformed_json(server, paths, streaming):
    server.set(mode="malformed")
    with pytest.raises(RemoteError) as info:
        list(make(server, paths).stream(request(), streaming=streaming))
    assert "malformed reply" in str(info.value)


def test_connection_refused(paths):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = RemoteSettings(policy="auto", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(RemoteError) as info:
        list(RemoteBackend(settings, {}, paths=paths).stream(request()))
    assert "cannot connect" in str(info.value) and "remote.base_url" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"policy": "auto", "base_url": ""}, "no remote endpoint is configured"),
        ({"policy": "auto", "base_url": "ftp://x"}, "not an http(s) URL"),
        ({"policy": "auto", "base_url": "http://127.0.0.1:9/v1", "proxy": "::nope::"}, "proxy"),
    ],
)
def test_bad_configuration(paths, settings, expected):
    with pytest.raises(RemoteError) as info:
        list(RemoteBackend(RemoteSettings(**settings), {}, paths=paths).stream(request()))
    assert expected in str(info.value)


def test_local_policy_sends_nothing(server, paths):
    server.set(mode="ok")
    backend = make(server, paths, policy="local")
    with pytest.raises(RemoteError) as info:
        list(backend.stream(request()))
    assert "remote.policy = local" in str(info.value)
    assert server.received == []


def test_local_policy_sends_nothing_through_the_cli(server, tmp_path):
    server.set(mode="ok")
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text(
        f'[remote]\npolicy = "local"\nbase_url = "{server.base_url}"\n'
    )
    env = Environment(
        stdin=io.StringIO(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        environ={"SHELLFISH_HOME": str(home), "OPENAI_API_KEY": "sk-test"},
    )
    status = main(["ask", "--remote", "what is 2+2"], env)
    assert status == RemoteError.exit_status
    assert "remote.policy = local" in env.stderr.getvalue()
    assert "Traceback" not in env.stderr.getvalue()
    assert server.received == []


def test_seeded_secrets_are_never_sent(server, paths):
    server.set(mode="ok")
    req = request(
        SECRET_TEXT,
        task="ask",
        options={"context": f"config: password={SECRETS[3]}\napi_key: {SECRETS[0]}"},
    )
    events = list(make(server, paths).stream(req))
    body = server.chat_requests[0].body
    for secret in SECRETS:
        assert secret not in body
    assert "[REDACTED]" in body
    # The first-use notice shows exactly what was sent.
    notice = next(e for e in events if isinstance(e, Status) and e.data.get("notice"))
    assert notice.data["sent"]["messages"] == json.loads(body)["messages"]
    for secret in SECRETS:
        assert secret not in notice.message


def test_suggest_context_is_redacted(server, paths):
    server.set(mode="ok")
    ctx = {"cwd": "/srv/app", "recent_commands": [f"export GITHUB_TOKEN={SECRETS[1]}", "ls"]}
    list(make(server, paths).stream(request("redeploy", context=ctx)))
    body = server.chat_requests[0].body
    assert SECRETS[1] not in body and "/srv/app" in body and "GITHUB_TOKEN" in body


def test_secret_echoed_in_an_earlier_answer_is_not_sent(server, paths):
    """The REPL sends earlier turns: an answer that repeated a secret in prose is masked too."""
    server.set(mode="ok")
    history = [
        {"role": "user", "content": "explain mysql -u root -pTr0ub4dor99 shop"},
        {"role": "assistant", "content": "It logs in as root with the password Tr0ub4dor99."},
    ]
    req = request("and then?", task="chat", options={"messages": history})
    list(make(server, paths).stream(req))
    body = server.chat_requests[0].body
    assert "Tr0ub4dor99" not in body and "password [REDACTED]" in body


def test_first_use_notice_only_once_per_endpoint(server, paths):
    server.set(mode="ok")
    first = list(make(server, paths).stream(request()))
    second = list(make(server, paths).stream(request()))
    notices = [e for e in first if isinstance(e, Status) and e.data.get("notice")]
    assert len(notices) == 1 and server.base_url in notices[0].message
    assert not [e for e in second if isinstance(e, Status) and e.data.get("notice")]


def test_cancel_stops_the_stream(server, paths):
    server.set(mode="ok", reply="x" * 40, pieces=20)
    cancel = threading.Event()
    tokens = 0
    done = None
    for event in make(server, paths).stream(request(), cancel=cancel):
        if isinstance(event, Token):
            tokens += 1
            if tokens == 2:
                cancel.set()
        elif isinstance(event, Done):
            done = event
    assert done is not None and done.finish_reason == "cancelled" and tokens == 2


def test_remote_through_cli_records_redacted_history(server, tmp_path):
    server.set(mode="ok", reply="It is 4.")
    home = tmp_path / "home"
    env = Environment(
        stdin=io.StringIO(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        environ={
            "SHELLFISH_HOME": str(home),
            "OPENAI_API_KEY": "sk-test",
            "SHELLFISH_REMOTE_POLICY": "auto",
            "SHELLFISH_REMOTE_BASE_URL": server.base_url,
        },
    )
    status = main(["ask", "--remote", SECRET_TEXT], env)
    assert status == 0, env.stderr.getvalue()
    assert "It is 4." in env.stdout.getvalue()
    assert "First use of the remote endpoint" in env.stderr.getvalue()
    for secret in SECRETS:
        assert secret not in server.chat_requests[0].body
    db = get_paths(env.environ).history_db
    assert db.exists()
    raw = db.read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in raw


def test_doctor_style_check(server, paths):
    server.set(mode="ok")
    assert "answers" in make(server, paths).check(timeout_s=2)
    server.set(mode="hang")  # /models still answers: the check only needs a reply
    with pytest.raises(ShellfishError):
        RemoteBackend(
            RemoteSettings(policy="auto", base_url="http://127.0.0.1:9/v1"), {}, paths=paths
        ).check(timeout_s=1)
