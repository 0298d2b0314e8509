"""Widget requests that zsh sends straight to the daemon socket land in the history log.

zsh's fast path has no Python client to record the exchange (`shellfish.client.stream` does
that for every other client), so the daemon records `reply_format: "lines"` requests itself,
after the reply went out, and only those: a JSON client's exchange must not be logged twice.
A real daemon on a real socket with the test suite's fake models.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from test_daemon import (
    Daemon,
    make_daemon,  # noqa: F401  (fixture)
    read_lines,
    read_marker_reply,
    wait_for,
)

from shellfish.daemon import protocol
from shellfish.history.log import HistoryLog


def _lines_request(daemon: Daemon, text: str) -> list[str]:
    sock = daemon.raw()
    request = {"text": text, "model": "echo", "context": {"source": "zsh", "cwd": "/tmp"}}
    sock.sendall(protocol.make_request("suggest", request=request, reply_format="lines"))
    return read_marker_reply(sock)


def test_lines_requests_are_recorded_json_requests_are_not(
    make_daemon: Callable[..., Daemon],  # noqa: F811
) -> None:
    daemon = make_daemon()
    log = HistoryLog(daemon.paths.history_db)
    sock = daemon.raw()
    sock.sendall(protocol.make_request("suggest", request={"text": "from json", "model": "echo"}))
    assert read_lines(sock)[-1]["kind"] == "done"
    sock.close()
    lines = _lines_request(daemon, "list files password=hunter2")
    assert lines[-1] == "SHELLFISH_END"
    assert wait_for(lambda: log.count() == 1), log.count()
    entry = log.search()[0]
    assert entry.task == "suggest" and entry.backend == "daemon"
    assert entry.request == "list files password=[REDACTED]"  # the log redacts, as always
    assert entry.context is not None and entry.context["source"] == "zsh"
    assert entry.response  # the answer the widget got
    assert log.search("from json") == []


def test_no_record_when_history_is_off(
    make_daemon: Callable[..., Daemon],  # noqa: F811
) -> None:
    daemon = make_daemon(SHELLFISH_HISTORY_ENABLED="false")
    assert _lines_request(daemon, "list files")[-1] == "SHELLFISH_END"
    time.sleep(0.5)  # the record would be written just after the reply
    assert HistoryLog(daemon.paths.history_db).count() == 0
