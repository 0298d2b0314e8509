"""The daemon under abuse and failure: crashes mid-stream, clients that do not read, hostile
request lines, fd exhaustion, a runtime dir taken by another user, and fair queueing.

Real daemon processes on real Unix sockets (the `make_daemon` fixture of test_daemon.py), with
`EchoRunner` models.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import test_daemon
from daemon_doubles import EchoRunner
from test_daemon import TESTS, Daemon, read_lines, wait_for

from shellfish.daemon import protocol
from shellfish.errors import DaemonError
from shellfish.events import Done, Token
from shellfish.request import TaskRequest

make_daemon = test_daemon.make_daemon  # the real-daemon fixture


def _env_for(daemon: Daemon, make_env: Callable[..., object]) -> object:
    """An Environment on the daemon's home whose in-process fallback also has echo models."""
    from shellfish.store.pool import ModelPool

    env = make_env(SHELLFISH_HOME=str(daemon.home))
    pool = ModelPool(
        env.paths,  # type: ignore[attr-defined]
        env.settings,  # type: ignore[attr-defined]
        loader=lambda name: (EchoRunner(name, tokens=30), []),
    )
    env.__dict__["_model_pool"] = pool  # what shellfish.client.local.get_pool hands out
    return env


# -- 1. a daemon crash in the middle of a stream ------------------------------------------------


@contextlib.contextmanager
def _killed_after(daemon: Daemon, seconds: float) -> Iterator[None]:
    """With the model loaded, kill -9 the daemon `seconds` into the block."""
    daemon.client.load("echo")
    pid = int(daemon.info["pid"])  # type: ignore[call-overload]
    killer = threading.Timer(seconds, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        yield
    finally:
        killer.cancel()


def test_crash_mid_stream_ends_with_an_error_and_prints_nothing_twice(
    make_daemon: Callable[..., Daemon], make_env: Callable[..., object]
) -> None:
    from shellfish.cli import main

    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.1", SHELLFISH_TEST_TOKENS="40")
    env = _env_for(daemon, make_env)
    with _killed_after(daemon, 1.0):  # ~10 tokens in
        status = main(["prompt", "--model", "echo", "count"], env)  # type: ignore[arg-type]
    out = env.stdout.getvalue()  # type: ignore[attr-defined]
    err = env.stderr.getvalue()  # type: ignore[attr-defined]
    words = out.split()
    assert words, err  # some of the answer was shown before the crash
    assert len(words) == len(set(words)), f"printed twice: {out!r}"
    assert words == [f"w{i}" for i in range(len(words))]
    assert status != 0
    assert "stopped in the middle of the answer" in err and "incomplete" in err


def test_crash_before_any_token_is_retried_in_process(
    make_daemon: Callable[..., Daemon], make_env: Callable[..., object]
) -> None:
    from shellfish.client import stream

    daemon = make_daemon(SHELLFISH_TEST_DELAY="2", SHELLFISH_TEST_TOKENS="5")
    env = _env_for(daemon, make_env)
    with _killed_after(daemon, 0.5):  # before the first token (2 s)
        events = list(stream(TaskRequest("prompt", "x", model="echo"), env))  # type: ignore[arg-type]
    tokens = [e.text.strip() for e in events if isinstance(e, Token)]
    assert tokens == [f"w{i}" for i in range(30)]  # the in-process EchoRunner's whole answer
    assert isinstance(events[-1], Done) and events[-1].backend != "daemon"


# -- 2. a client that writes requests and never reads -------------------------------------------


def test_unread_replies_and_queued_requests_are_bounded(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.002", SHELLFISH_TEST_TOKENS="20")
    daemon.client.load("echo")
    process = psutil.Process(int(daemon.info["pid"]))  # type: ignore[call-overload]
    rss_before = process.memory_info().rss
    sock = daemon.raw()
    text = "x " * 5000  # 10 kB per request
    count = 2000  # 20 MB sent
    sent: list[int] = []

    def send_all() -> None:
        for i in range(count):
            line = protocol.make_request(
                "generate",
                request_id=i,
                request={"task": "prompt", "text": text, "model": "echo"},
            )
            try:
                sock.sendall(line)
            except OSError:
                return
            sent.append(i)

    sender = threading.Thread(target=send_all, daemon=True)
    sock.settimeout(None)
    sender.start()
    time.sleep(4)  # not reading meanwhile: the daemon must not buffer all of it
    grown = process.memory_info().rss - rss_before
    finals: dict[object, dict[str, object]] = {}
    buffer = b""
    sock.settimeout(30)
    while len(finals) < count:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(finals)} replies"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            reply = json.loads(line)
            if reply["final"]:
                assert reply["id"] not in finals
                finals[reply["id"]] = reply
    sender.join(10)
    sock.close()
    assert grown < 64 * 2**20, f"daemon grew {grown / 2**20:.0f} MB"
    kinds = {(r["kind"], r.get("code")) for r in finals.values()}
    assert kinds <= {("done", None), ("error", "busy")}, kinds
    assert ("error", "busy") in kinds  # the queue is bounded...
    assert ("done", None) in kinds  # ...and what was queued ran
    assert set(finals) == set(range(count))  # every request got its one final reply
    assert daemon.client.is_running()


def test_outbox_overflow_ends_with_a_busy_error() -> None:
    from shellfish.daemon.connection import Budget, Outbox, _Item

    budget = Budget(max_reply_bytes=10_000)
    box = Outbox(max_events=4, max_bytes=1_000_000, budget=budget)
    other = Outbox(budget=budget)
    assert other.put(_Item(Token("y" * 6_000), False, "o", "json"))
    ok = True
    for _ in range(1_000):
        ok = box.put(_Item(Token("x" * 10), False, "r", "json"))
        if not ok:
            break
    assert not ok and box.overflowed  # the total over all connections was reached
    item = box.get()
    assert item is not None and box.get() is None  # one item left, then closed
    reply = json.loads(item.encode())
    assert reply["kind"] == "error" and reply["code"] == "busy" and reply["id"] == "r"
    assert other.get() is not None
    assert budget.reply_bytes == 0


# -- 4. hostile request lines, bad values, fd exhaustion ----------------------------------------


def test_deep_nesting_and_huge_integers_get_replies(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    sock = daemon.raw()
    for line in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v": 1, "cmd": "ping", "pad": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"v": 1, "cmd": "ping", "id": ' + b"9" * 5000 + b"}",
    ):
        sock.sendall(line + b"\n")
        reply = read_lines(sock)[-1]
        assert reply["kind"] == "error" and reply["code"] == "bad_json", reply
    sock.sendall(protocol.make_request("ping", request_id="still"))
    assert read_lines(sock)[-1]["id"] == "still"
    sock.close()


BAD_GENERATIONS: list[dict[str, object]] = [
    {"max_new_tokens": "lots"},
    {"temperature": -1},
    {"temperature": "hot"},
    {"no_such_setting": 1},
    {"stop": 5},
    {"stop": [1, 2]},
    {"n": 10**9},
    {"max_new_tokens": True},
    {"seed": -1},
    {"top_p": float("nan")},
    {"keep_system_turn": True},  # the suggest task's own: no client keeps its prompts on disk
    {"logprobs": "yes"},
]


def test_bad_generation_values_are_bad_requests(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    sock = daemon.raw()
    for i, generation in enumerate(BAD_GENERATIONS):
        request = {"task": "prompt", "text": "x", "model": "echo", "generation": generation}
        sock.sendall(protocol.make_request("generate", request_id=i, request=request))
        reply = read_lines(sock)[-1]
        assert reply["kind"] == "error" and reply["code"] == "bad_request", (generation, reply)
        assert reply["id"] == i
    sock.close()


def test_out_of_file_descriptors_backs_off_and_recovers(
    make_daemon: Callable[..., Daemon],
) -> None:
    """With RLIMIT_NOFILE low, connections beyond the fds stay in the backlog, the accept loop
    does not spin, and they are served once fds free up."""
    daemon = make_daemon(start=False)
    limit = 48

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    daemon.paths.daemon_log.parent.mkdir(parents=True, exist_ok=True)
    log = open(daemon.paths.daemon_log, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "shellfish.daemon.server", "--loader", LOADER_SPEC],
        env=daemon.environ,
        stdout=log,
        stderr=log,
        preexec_fn=lower_limit,
        cwd=str(TESTS),
    )
    log.close()
    socks: list[socket.socket] = []
    try:
        assert wait_for(daemon.client.is_running, timeout=30), daemon.log()
        for _ in range(limit + 8):  # more than the daemon has fds for
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon.paths.socket))  # the backlog takes it
            socks.append(sock)
        time.sleep(1.0)  # the daemon has taken what it can
        proc = psutil.Process(process.pid)
        cpu_before = sum(proc.cpu_times()[:2])
        time.sleep(2.0)
        cpu = sum(proc.cpu_times()[:2]) - cpu_before
        assert cpu < 0.3, f"the daemon used {cpu:.2f} s of CPU in 2 s while out of fds"
        for sock in socks:
            sock.close()
        socks.clear()
        assert wait_for(daemon.client.is_running, timeout=15), daemon.log()
        assert process.poll() is None
        assert "cannot accept connections" in daemon.log()
    finally:
        for sock in socks:
            sock.close()
        process.send_signal(signal.SIGTERM)
        process.wait(10)


LOADER_SPEC = "daemon_doubles:loader_factory"


def _connect(daemon: Daemon) -> socket.socket:
    """Connect, waiting while the listen backlog is full (EAGAIN on a Unix socket)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return daemon.raw()
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_connections_over_the_cap_are_told_busy(make_daemon: Callable[..., Daemon]) -> None:
    from shellfish.daemon import server

    daemon = make_daemon()
    socks = []
    try:
        busy = None
        for _ in range(server.MAX_CONNECTIONS + 4):
            socks.append(_connect(daemon))
        # the ones over the cap get one busy line and a close
        replies = []
        for sock in socks[server.MAX_CONNECTIONS :]:
            replies.append(read_lines(sock))
        busy = [r[-1] for r in replies if r]
        assert len(busy) == 4 and all(r["code"] == "busy" for r in busy), replies
    finally:
        for sock in socks:
            sock.close()

    def serving() -> bool:  # busy until the daemon has reaped the closed connections
        try:
            return bool(daemon.client.is_running())
        except DaemonError:
            return False

    assert wait_for(serving)


# -- 3. queue wait reported apart ----------------------------------------------------------------


def test_done_reports_queue_wait_apart_from_model_time(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.05", SHELLFISH_TEST_TOKENS="10")
    daemon.client.load("echo")
    results: list[Done] = []

    def ask() -> None:
        events = list(daemon.client.stream(TaskRequest("prompt", "x", model="echo")))
        results.append(events[-1])  # type: ignore[arg-type]

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(30)
    waits = sorted(d.extra["queue_ms"] for d in results)
    assert waits[0] < 100  # the first one did not wait
    assert waits[-1] > 700  # the last waited for two answers of ~0.5 s
    for done in results:
        assert done.total_ms < 1000  # model time only: ten steps of 0.05 s
        assert done.extra["daemon_ms"] >= done.extra["queue_ms"] + done.total_ms * 0.9


# -- 5. the runtime dir ------------------------------------------------------------------------


def test_runtime_dir_of_another_user_falls_back_to_a_private_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shellfish.environment import Environment
    from shellfish.paths import get_paths, unsafe_runtime_dir

    base = tmp_path / "xdg"
    base.mkdir()
    base.chmod(0o700)
    monkeypatch.delenv("SHELLFISH_HOME", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))  # platformdirs reads os.environ
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert get_paths({}).runtime == base / "shellfish" and get_paths({}).notes == ()

    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)  # base now belongs to "another user"
    paths = get_paths({})
    assert paths.runtime == tmp_path / "cache" / "shellfish" / "run"
    assert "belongs to another user" in paths.notes[0] and str(paths.runtime) in paths.notes[0]
    monkeypatch.setattr(os, "getuid", lambda: me)
    base.chmod(0o777)
    assert "writable by other users" in str(unsafe_runtime_dir(base / "shellfish"))
    monkeypatch.setattr(os, "getuid", lambda: me + 1)

    # every command goes on (here: "no daemon") and says where the socket went
    from io import StringIO

    from shellfish.cli import main

    env = Environment(
        stdin=StringIO(), stdout=StringIO(), stderr=StringIO(), environ=dict(os.environ)
    )
    assert main(["daemon", "status"], env) == 4
    err = env.stderr.getvalue()  # type: ignore[attr-defined]
    assert "belongs to another user" in err
    assert "not running" in env.stdout.getvalue()  # type: ignore[attr-defined]
    assert "Traceback" not in err


def test_the_budget_bounds_queued_requests_across_connections() -> None:
    from shellfish.daemon.connection import Budget

    budget = Budget(max_requests=2, max_request_bytes=100)
    assert budget.take_request(10) and budget.take_request(10)
    assert not budget.take_request(10)  # a third request anywhere is over the total
    budget.give_request(10)
    assert not budget.take_request(95)  # bytes count too
    assert budget.take_request(80)
    assert (budget.requests, budget.request_bytes) == (2, 90)


def test_clients_that_hang_up_with_requests_queued_give_the_budget_back(
    make_daemon: Callable[..., Daemon],
) -> None:
    """Found by the soak: requests read after the client was gone stayed counted in the total,
    until every new request (even `status`) was told busy."""
    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.01", SHELLFISH_TEST_TOKENS="5")
    daemon.client.load("echo")
    request = {"task": "prompt", "text": "x", "model": "echo"}
    lines = b"".join(
        protocol.make_request("generate", request_id=i, request=request) for i in range(3000)
    )
    for _ in range(10):
        sock = daemon.raw()
        sock.sendall(lines)
        sock.close()  # hang up at once, replies unread
    assert wait_for(lambda: daemon.client.status()["queued_requests"] == 0, timeout=20)
    assert wait_for(lambda: daemon.client.status()["connections"] == 1, timeout=5)
