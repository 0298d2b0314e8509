"""Protocol fuzzing against a live daemon (hypothesis): arbitrary bytes, JSON shapes and sizes.

For every frame the daemon must answer (one final reply line, or `SHELLFISH_END` for the widget
format) and keep the connection; it must not hang: each frame is followed by a `ping`
whose reply has to arrive within the timeout. Frames that by design get no reply (blank lines,
`cancel`) only need the ping answered. Bounded in examples and time for the fast suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra, not installed here")

from daemon_doubles import install_fake_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_daemon import LOADER, TESTS, Daemon

from shellfish.client import lifecycle
from shellfish.daemon import protocol
from shellfish.engine.base import GenerationConfig

SENTINEL = "fuzz-sentinel"
REPLY_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    home = Path(tempfile.mkdtemp(prefix="sfz-"))
    install_fake_models(home)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHELLFISH_")}
    environ.update({"SHELLFISH_HOME": str(home), "PYTHONPATH": str(TESTS)})
    daemon = Daemon(home, environ)
    daemon.loader_args = LOADER
    daemon.start()
    yield daemon
    with contextlib.suppress(Exception):
        lifecycle.stop(daemon.paths, timeout_s=5)
    shutil.rmtree(home, ignore_errors=True)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
generation_keys = st.sampled_from([f.name for f in GenerationConfig.__dataclass_fields__.values()])
requests = st.fixed_dictionaries(
    {
        "task": st.sampled_from(["prompt", "suggest", "explain", "nope"]) | st.text(max_size=8),
        "text": st.text(max_size=60) | json_values,
        "model": st.sampled_from(["echo", "echo2", "missing"]) | json_values,
    },
    optional={
        "generation": st.dictionaries(generation_keys, json_values, max_size=4) | json_values,
        "options": st.dictionaries(st.text(max_size=10), json_values, max_size=3) | json_values,
        "context": json_values,
    },
)
commands = st.sampled_from([c for c in protocol.COMMANDS if c != "shutdown"]) | st.text(max_size=10)
request_frames = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 0, 2, "1"]) | json_values, "cmd": commands},
    optional={
        "id": json_values,
        "request": requests | json_values,
        "model": st.sampled_from(["echo", "missing", ""]) | json_values,
        "reply_format": st.sampled_from(["json", "lines", "xml"]) | json_values,
        "pad": st.integers(0, 200_000).map(lambda n: "x" * n),
    },
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


frames = st.one_of(
    st.binary(max_size=2000).map(lambda b: b.replace(b"\n", b" ")),
    json_values.map(_encode),
    request_frames.filter(lambda f: f.get("cmd") != "shutdown").map(_encode),
    st.integers(1, 2000).map(lambda n: b"[" * n * 60 + b"]" * n * 60),  # deep nesting
    st.integers(4000, 6000).map(lambda n: b'{"v": 1, "cmd": "ping", "id": ' + b"7" * n + b"}"),
)


def _expects_reply(frame: bytes) -> bool:
    if not frame.strip():
        return False
    try:
        request = protocol.parse_request(frame.strip())
    except protocol.BadRequest:
        return True
    return request.cmd != "cancel"


def _exchange(daemon: Daemon, frame: bytes) -> tuple[list[bytes], bool]:
    """Send `frame` then a ping; (reply lines before the ping's, whether the ping was answered)."""
    sock = daemon.raw()
    sock.settimeout(REPLY_TIMEOUT_S)
    try:
        sock.sendall(frame + b"\n" + protocol.make_request("ping", request_id=SENTINEL))
        buffer = b""
        lines: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                raise AssertionError(
                    f"no reply in {REPLY_TIMEOUT_S} s to {frame[:200]!r}"
                ) from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return lines, False  # a clean close
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                if SENTINEL.encode() in line and line.startswith(b"{"):
                    reply = json.loads(line)
                    if reply.get("id") == SENTINEL and reply.get("final"):
                        return lines, True
                lines.append(line)
    finally:
        sock.close()


def _finals(lines: list[bytes]) -> int:
    count = 0
    for line in lines:
        if line == b"SHELLFISH_END":
            count += 1
        elif line.startswith(b"{"):
            count += bool(json.loads(line).get("final"))
    return count


@settings(
    max_examples=150,
    database=None,  # no .hypothesis directory in the checkout
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
def test_every_frame_gets_a_reply(daemon: Daemon, frame: bytes) -> None:
    lines, answered = _exchange(daemon, frame)
    # No frame here is over the line limit or abusive enough to deserve a close.
    assert answered, f"connection closed after {frame[:300]!r}: {lines[:5]}"
    if _expects_reply(frame):
        assert _finals(lines) == 1, (frame[:300], lines[:5])
    for line in lines:
        if line.startswith(b"{"):
            reply = json.loads(line)
            assert reply.get("code") != "internal", (frame[:300], reply)
    assert daemon.client.is_running()


def test_the_daemon_survived_the_fuzzing(daemon: Daemon) -> None:
    test_every_frame_gets_a_reply(daemon)  # type: ignore[call-arg]
    assert daemon.client.is_running()
    log = daemon.log()
    assert "reader failed" not in log and "Traceback" not in log, log[-3000:]
