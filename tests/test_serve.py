"""`shellfish serve`: the official `openai` client against a real uvicorn server on 127.0.0.1.

The models are EchoRunner test doubles (tests/daemon_doubles.py) in a real ModelPool: they
echo their prompt, so every answer below is computed, not canned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from daemon_doubles import EchoRunner, install_fake_models

from shellfish.config import Settings
from shellfish.errors import ModelNotFound, UsageError
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
