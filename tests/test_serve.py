"""`shellfish serve`: the official `openai` client against a real uvicorn server on 127.0.0.1.

The models are EchoRunner test doubles (tests/daemon_doubles.py) in a real ModelPool: they
echo their prompt, so every answer below is computed, not canned.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from daemon_doubles import EchoRunner, install_fake_models

from shellfish.config import Settings
from shellfish.errors import ModelNotFound, UsageError
from shellfish.events import Done
from shellfish.paths import get_paths
from shellfish.serve.server import RunningServer, check_host, start_pool_server
from shellfish.store.pool import ModelPool

TOKEN = "s3cret-token"


def _loader(name: str) -> tuple[EchoRunner, list[str]]:
    if not name.startswith("echo"):
        raise ModelNotFound(f"model '{name}' is not installed")
    return EchoRunner(name), []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    install_fake_models(tmp_path)
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    settings = Settings()
    pool = ModelPool(paths, settings, loader=_loader)
    running = start_pool_server(pool, settings, paths, token=TOKEN)
    yield running
    running.stop()


def client(server: RunningServer, key: str = TOKEN):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=20)


def test_models_lists_installed(server: RunningServer) -> None:
    ids = [m.id for m in client(server).models.list()]
    assert {"echo", "echo2", "echo3"} <= set(ids)


def test_chat_completion_non_stream(server: RunningServer) -> None:
    reply = client(server).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "list the files here"}]
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "list the files here"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert reply.model == "echo"


def test_chat_completion_stream(server: RunningServer) -> None:
    stream = client(server).chat.completions.create(
        model="echo",
        stream=True,
        stream_options={"include_usage": True},
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "count words please"},
        ],
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    text = "".join(pieces)
    assert len(pieces) > 1  # really streamed, token by token
    assert text.endswith("count words please") and "be brief" in text
    assert finish == "stop" and usage is not None and usage.total_tokens > 0


def test_completions_stream_and_not(server: RunningServer) -> None:
    api = client(server)
    full = api.completions.create(model="echo", prompt="one two three four", max_tokens=3)
    assert full.choices[0].text == "one two three"
    streamed = api.completions.create(model="echo", prompt="one two three four", stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "one two three four"


def test_token_is_required_when_configured(server: RunningServer) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").models.list()
    response = httpx.get(server.base_url + "/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_bad_requests_get_openai_style_errors(server: RunningServer) -> None:
    import openai

    api = client(server)
    with pytest.raises(openai.NotFoundError, match=r"not installed|unknown model"):
        api.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError, match="temperature"):
        api.chat.completions.create(
            model="echo", temperature=5, messages=[{"role": "user", "content": "hi"}]
        )
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    response = httpx.post(server.base_url + "/chat/completions", content=b"{nope", headers=headers)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    response = httpx.post(
        server.base_url + "/chat/completions", json={"model": "echo"}, headers=headers
    )
    assert response.status_code == 400 and "messages" in response.json()["error"]["message"]


def test_non_loopback_hosts_are_refused() -> None:
    check_host("127.0.0.1")
    check_host("::1")
    check_host("localhost")
    with pytest.raises(UsageError, match="--allow-remote"):
        check_host("0.0.0.0")
    with pytest.raises(UsageError):
        check_host("192.168.1.10")
    check_host("0.0.0.0", allow_remote=True)


def test_serve_cli_refuses_public_host(make_env) -> None:  # type: ignore[no-untyped-def]
    from shellfish.cli import main

    env = make_env()
    assert main(["serve", "--host", "0.0.0.0"], env) == 2
    assert "refusing to serve on 0.0.0.0" in env.stderr.getvalue()


# -- a client that leaves, limits, and hostile input (issue 15 item 4) ---------------------------


class RecordingRunner(EchoRunner):
    """A slow EchoRunner (2000 tokens, 50 ms each: 100 s in full) that records how runs ended."""

    finishes: ClassVar[list[str]] = []

    def __init__(self, name: str) -> None:
        super().__init__(name, delay=0.05, tokens=2000)
        self.info.context_length = 64

    def generate(self, prompt, config, *, cancel=None):  # type: ignore[no-untyped-def]
        self.max_new_tokens = config.max_new_tokens
        for event in super().generate(prompt, config, cancel=cancel):
            if isinstance(event, Done):
                RecordingRunner.finishes.append(event.finish_reason)
            yield event


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[RunningServer, ModelPool]]:
    install_fake_models(tmp_path)
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    settings = Settings()
    RecordingRunner.finishes = []
    pool = ModelPool(paths, settings, loader=lambda name: (RecordingRunner(name), []))
    running = start_pool_server(pool, settings, paths)
    yield running, pool
    running.stop()


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_generation(slow_server, stream: bool) -> None:  # type: ignore[no-untyped-def]
    server, _ = slow_server
    body = {"model": "echo", "prompt": "go", "max_tokens": 60, "stream": stream}
    # 60 tokens at 50 ms: 3 s in full; the client leaves after 0.3 s
    RecordingRunner.finishes.clear()
    if stream:
        with httpx.stream("POST", server.base_url + "/completions", json=body, timeout=5) as r:
            assert r.status_code == 200
            next(r.iter_lines())
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.base_url + "/completions", json=body, timeout=0.3)
    assert _wait_for(lambda: RecordingRunner.finishes, 10.0)
    assert RecordingRunner.finishes == ["cancelled"]
    # the model is free again at once: the next request does not wait for the first
    started = time.monotonic()
    reply = httpx.post(
        server.base_url + "/completions", json={**body, "stream": False, "max_tokens": 2}
    )
    assert reply.status_code == 200 and reply.json()["choices"][0]["text"] == "w0 w1"
    assert time.monotonic() - started < 2.0


def test_max_tokens_is_capped_by_the_model_context(slow_server) -> None:  # type: ignore[no-untyped-def]
    server, pool = slow_server
    reply = httpx.post(
        server.base_url + "/completions",
        json={"model": "echo", "prompt": "go", "max_tokens": 100000},
        timeout=20,  # 64 tokens take 3.2 s; 2000 would take 100
    )
    assert reply.status_code == 200
    # context 64: the echo runner emits at most 64 tokens, not 2000 (or 100000)
    assert reply.json()["usage"]["completion_tokens"] <= 64
    assert pool._ensure("echo").runner.max_new_tokens <= 64


def _post(server: RunningServer, path: str, content: bytes, **headers: str) -> httpx.Response:
    base = {"Content-Type": "application/json"}
    return httpx.post(server.base_url + path, content=content, headers={**base, **headers})


@pytest.mark.parametrize("stream", [False, True])
def test_hostile_requests_get_400_not_500(slow_server, stream: bool) -> None:  # type: ignore[no-untyped-def]
    server, _ = slow_server
    flag = "true" if stream else "false"
    too_long = json.dumps({"model": "echo", "prompt": "word " * 100, "stream": stream})
    reply = _post(server, "/completions", too_long.encode())
    assert reply.status_code == 400, reply.text
    assert "reads at most 63" in reply.json()["error"]["message"]
    # exactly the context: no room left for an answer (the causal engines refuse it too)
    full = json.dumps({"model": "echo", "prompt": "word " * 64, "stream": stream})
    assert _post(server, "/completions", full.encode()).status_code == 400
    surrogate = b'{"model": "echo", "stream": %s, "prompt": "a \\ud800 b"}' % flag.encode()
    reply = _post(server, "/completions", surrogate)
    assert reply.status_code == 400, reply.text
    nested = b'{"model": "echo", "prompt": "x", "extra": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    reply = _post(server, "/completions", nested)
    assert reply.status_code == 400, reply.text


def test_non_ascii_bearer_token_is_401_not_500(server: RunningServer, tmp_path: Path) -> None:
    response = httpx.get(
        server.base_url + "/models", headers={"Authorization": "Bearer t\u00f6ken".encode()}
    )
    assert response.status_code == 401
    # a non-ASCII token configured on the server matches the same UTF-8 bytes from a client
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    pool = ModelPool(paths, Settings(), loader=_loader)
    with start_pool_server(pool, Settings(), paths, token="t\u00f6ken") as other:
        headers = {"Authorization": "Bearer t\u00f6ken".encode()}
        assert httpx.get(other.base_url + "/models", headers=headers).status_code == 200


# -- what a local page or a huge body can do (issue 15 item 5) -----------------------------------


class _CountingApp:
    """ASGI wrapper counting the request-body bytes the app pulled from the server."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.read = 0

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        async def counted():  # type: ignore[no-untyped-def]
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def test_a_huge_body_is_refused_without_reading_it(tmp_path: Path) -> None:
    from shellfish.serve.app import Backend, create_app
    from shellfish.serve.server import start_in_thread

    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    pool = ModelPool(paths, Settings(), loader=_loader)
    limit = 64 * 1024
    app = _CountingApp(create_app(Backend(pool, Settings(), paths), max_body_bytes=limit))
    sent = 0

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        nonlocal sent
        for _ in range(256):  # 16 MB in all
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    with start_in_thread(app) as running:
        try:
            response = httpx.post(
                running.base_url + "/completions",
                content=body(),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 413
        except httpx.TransportError:
            pass  # the server may close while the client still writes; what it read counts
        assert app.read <= limit + 64 * 1024, (app.read, sent)
        # a declared length over the limit is refused before any of the body is sent
        with socket.create_connection((running.host, running.port), timeout=5) as conn:
            conn.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (limit + 1)
            )
            assert conn.recv(100).startswith(b"HTTP/1.1 413 ")


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[RunningServer]:
    """The default `shellfish serve`: no token."""
    install_fake_models(tmp_path)
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    pool = ModelPool(paths, Settings(), loader=_loader)
    running = start_pool_server(pool, Settings(), paths, origins=["http://localhost:3000"])
    yield running
    running.stop()


CHAT = {"model": "echo", "messages": [{"role": "user", "content": "rm -rf ~"}]}


def test_a_rebound_host_name_is_refused(open_server: RunningServer) -> None:
    url = open_server.base_url + "/chat/completions"
    ok = httpx.post(url, json=CHAT)
    assert ok.status_code == 200
    for host in ("evil.example", "evil.example:8741", "127.0.0.1.evil.example"):
        response = httpx.post(url, json=CHAT, headers={"Host": host})
        assert response.status_code == 403, host
        assert "Host" in response.json()["error"]["message"]
    assert (
        httpx.get(open_server.base_url + "/models", headers={"Host": "evil.example"}).status_code
        == 403
    )
    for host in ("localhost", f"localhost:{open_server.port}", f"[::1]:{open_server.port}"):
        assert httpx.post(url, json=CHAT, headers={"Host": host}).status_code == 200, host


def test_browser_origins_are_refused_unless_allowed(open_server: RunningServer) -> None:
    url = open_server.base_url + "/chat/completions"
    response = httpx.post(url, json=CHAT, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    allowed = httpx.post(url, json=CHAT, headers={"Origin": "http://localhost:3000"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_a_form_or_text_plain_body_is_refused(open_server: RunningServer) -> None:
    url = open_server.base_url + "/chat/completions"
    # what an HTML form or a `no-cors` fetch can send without a CORS preflight
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = httpx.post(url, content=json.dumps(CHAT).encode(), headers=headers)
        assert response.status_code == 415, content_type
    charset = httpx.post(
        url,
        content=json.dumps(CHAT).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 200


def test_serve_help_says_what_the_default_exposes(make_env, capsys) -> None:  # type: ignore[no-untyped-def]
    from shellfish.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"], make_env())
    text = " ".join(capsys.readouterr().out.split())
    assert "any local user" in text and "--allow-origin" in text and "--token" in text


def test_text_that_is_not_utf8_is_answered_with_replacement_characters(
    server: RunningServer,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    head = b'{"model": "echo", "prompt": "'
    # (a lone surrogate *escape* is a 400: test_hostile_requests_get_400_not_500)
    for text in (b"caf\xe9 ok",):
        response = httpx.post(
            server.base_url + "/completions", content=head + text + b'"}', headers=headers
        )
        assert response.status_code == 200, response.text
        assert "caf\ufffd ok" in response.json()["choices"][0]["text"]
