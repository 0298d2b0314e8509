"""The widget's two paths give the same bytes for the same events.

The zsh/bash widgets get their answer either from the daemon (`reply_format: "lines"`, the fast
path) or from `shellfish widget ...` (the slow path, when no daemon answers). Both encode with
`shellfish.shell.markers`; here the same event sequence is fed to a real `DaemonServer`
connection (over a socketpair) and to the real CLI command, and the bytes are compared.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import shellfish.client
import shellfish.tasks
from shellfish.cli import main
from shellfish.config import load_settings
from shellfish.daemon import protocol
from shellfish.daemon.connection import Connection
from shellfish.daemon.server import DaemonServer
from shellfish.errors import Cancelled, ModelNotFound, ShellfishError
from shellfish.events import Done, Error, Event, Status, Token
from shellfish.paths import get_paths
from shellfish.shell import markers

# Each case: a stream of events, or a stream that raises after its events.
Step = Event | ShellfishError
CASES: dict[str, list[Step]] = {
    "commands and warnings": [
        Status("loading m"),
        Token("ls"),
        Done(
            texts=["ls -la\tx", " ls -la\tx ", "du -sh\\n", ""],
            extra={"warnings": ["danger: recursive\ndelete", "low confidence (0.20)"]},
        ),
    ],
    "empty reply": [Done(texts=[], extra={"warnings": []})],
    "blank reply": [Token("  "), Done(texts=["  ", "\n"], extra={"warnings": ["w"]})],
    "error with hint": [
        Error("model 'q' is not installed", code="model_not_found", hint="run `pull q`")
    ],
    "error without hint": [Token("x"), Error("the prompt is too long", code="prompt_too_long")],
    "cancelled generation": [Token("rm -"), Done(texts=["rm -"], finish_reason="cancelled")],
    "cancelled while waiting": [Status("waiting"), Cancelled("cancelled while waiting")],
    "raised error": [ModelNotFound("model 'x' is gone", hint="run `shellfish models pull x`")],
}


def _events(steps: list[Step]) -> Callable[..., Iterator[Event]]:
    def stream(*_args: Any, **_kwargs: Any) -> Iterator[Event]:
        for step in steps:
            if isinstance(step, ShellfishError):
                raise step
            yield step

    return stream


def _daemon_reply(steps: list[Step], home: Any, monkeypatch: pytest.MonkeyPatch) -> bytes:
    environ = {"SHELLFISH_HOME": str(home)}
    server = DaemonServer(get_paths(environ), load_settings(None, environ), pool=object())  # type: ignore[arg-type]
    monkeypatch.setattr(shellfish.tasks, "run_task", _events(steps))
    ours, theirs = socket.socketpair()
    conn = Connection(theirs, server._dispatch, 1)
    conn.start()
    ours.settimeout(10)
    ours.sendall(protocol.make_request("suggest", request={"text": "x"}, reply_format="lines"))
    reply = b""
    while not reply.endswith(f"{markers.END}\n".encode()):
        chunk = ours.recv(65536)
        assert chunk, reply
        reply += chunk
    ours.close()
    conn.join(5)
    return reply


def _cli_reply(steps: list[Step], make_env: Any, monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(shellfish.client, "stream", _events(steps))
    env = make_env("x\n")
    assert main(["widget", "suggest"], env) == 0
    return env.stdout.getvalue().encode("utf-8")


@pytest.mark.parametrize("case", sorted(CASES))
def test_daemon_and_cli_give_identical_bytes(
    case: str, make_env: Any, shellfish_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = CASES[case]
    daemon = _daemon_reply(steps, shellfish_home, monkeypatch)
    cli = _cli_reply(steps, make_env, monkeypatch)
    assert daemon == cli
    # and the reply is one the scripts accept: ends once, errors carry no command
    commands, _warnings, error, ended = markers.parse_lines(daemon.decode().splitlines())
    assert (
        ended
        and daemon.count(b"\n" + markers.END.encode()) + daemon.startswith(markers.END.encode())
        == 1
    )
    assert (error is None) == bool(commands)


def test_the_cases_cover_each_kind_of_reply() -> None:
    """What the comparison above pins down, stated once."""
    replies = {case: markers.reply_lines(_final(steps)) for case, steps in CASES.items()}
    assert replies["commands and warnings"] == [
        "SHELLFISH_CMD\tls -la\\tx",
        "SHELLFISH_CMD\tdu -sh\\\\n",
        "SHELLFISH_WARN\tdanger: recursive\\ndelete",
        "SHELLFISH_WARN\tlow confidence (0.20)",
        "SHELLFISH_END",
    ]
    assert (
        replies["empty reply"] == replies["blank reply"] == markers.error_lines(markers.NO_COMMAND)
    )
    assert replies["cancelled generation"] == ["SHELLFISH_ERR\tcancelled", "SHELLFISH_END"]
    assert replies["error with hint"] == [
        "SHELLFISH_ERR\tmodel 'q' is not installed - run `pull q`",
        "SHELLFISH_END",
    ]


def _final(steps: list[Step]) -> Event | None:
    last = steps[-1]
    if isinstance(last, ShellfishError):
        return Error(last.message, hint=last.hint)
    return last
