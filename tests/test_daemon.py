"""The daemon: a real process on a real Unix socket in a temp dir.

Models are `EchoRunner` test doubles (tests/daemon_doubles.py) loaded in the daemon
process through `--loader`; they stand in for the model in tests of the daemon's mechanics.
`tests/test_daemon_onnx.py` runs the same path through a real ONNX model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_doubles import install_fake_models

from shellfish.client import lifecycle
from shellfish.client.daemon import DaemonClient
from shellfish.config import load_settings
from shellfish.daemon import protocol, state
from shellfish.errors import DaemonError, DaemonUnavailable, ModelNotFound, ProtocolError
from shellfish.events import Done, Token
from shellfish.paths import Paths, get_paths
from shellfish.request import TaskRequest
from shellfish.shell import markers

TESTS = Path(__file__).resolve().parent
LOADER = ["--loader", "daemon_doubles:loader_factory"]


def _short_home() -> Path:
    # Unix socket paths are limited to ~104 bytes; pytest's tmp_path can be longer.
    import tempfile

    return Path(tempfile.mkdtemp(prefix="sfd-"))


class Daemon:
    def __init__(self, home: Path, environ: dict[str, str], fake: bool = True) -> None:
        self.home = home
        self.loader_args = LOADER if fake else []
        self.environ = environ
        self.paths = get_paths(environ)
        self.settings = load_settings(None, environ)
        self.client = DaemonClient(self.paths)
        self.info: dict[str, object] = {}

    def start(self, extra: list[str] | None = None) -> dict[str, object]:
        self.info = lifecycle.start(
            self.paths,
            self.settings,
            environ=self.environ,
            extra_args=[*self.loader_args, *(extra or [])],
            timeout_s=30,
        )
        return self.info

    def raw(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(self.paths.socket))
        return sock

    def log(self) -> str:
        return "\n".join(lifecycle.read_log(self.paths, 500))


@pytest.fixture
def make_daemon() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(start: bool = True, fake: bool = True, **env: str) -> Daemon:
        home = _short_home()
        if fake:
            install_fake_models(home)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SHELLFISH_")}
        environ.update({"SHELLFISH_HOME": str(home), "PYTHONPATH": str(TESTS)}, **env)
        daemon = Daemon(home, environ, fake)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        with contextlib.suppress(DaemonError):
            lifecycle.stop(daemon.paths, timeout_s=5)
        import shutil

        shutil.rmtree(daemon.home, ignore_errors=True)


def read_marker_reply(sock: socket.socket) -> list[str]:
    """The marker lines of a `reply_format: "lines"` reply, up to SHELLFISH_END; closes `sock`."""
    raw = b""
    while not raw.endswith(b"SHELLFISH_END\n"):
        chunk = sock.recv(65536)
        assert chunk, raw
        raw += chunk
    sock.close()
    return raw.decode().splitlines()


def read_lines(sock: socket.socket, until_final: bool = True) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            out.append(json.loads(line))
            if until_final and out[-1].get("final"):
                return out
        chunk = sock.recv(65536)
        if not chunk:
            return out
        buffer += chunk


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- lifecycle ----------------------------------------------------------------------------------


def test_stop_counts_a_daemon_that_exits_before_its_reply(
    make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine the daemon can take the shutdown request and exit before its reply
    arrives: stop stopped it all the same and says so."""
    daemon = make_daemon()
    paths = daemon.paths
    shutdown = DaemonClient.shutdown

    def lost_reply(self: DaemonClient) -> dict[str, object]:
        shutdown(self)
        assert wait_for(lambda: not state.daemon_alive(paths))
        raise DaemonUnavailable("the daemon closed the connection")

    monkeypatch.setattr(DaemonClient, "shutdown", lost_reply)
    assert lifecycle.stop(paths) is True
    assert not paths.socket.exists() and not paths.daemon_state.exists()
    assert lifecycle.stop(paths) is False


def test_start_writes_private_state_and_status(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    paths = daemon.paths
    assert daemon.info["already_running"] is False
    assert stat.S_IMODE(os.stat(paths.runtime).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(paths.socket).st_mode)
    assert stat.S_IMODE(os.stat(paths.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.daemon_state).st_mode) == 0o600
    saved = json.loads(paths.daemon_state.read_text())
    assert saved["pid"] == daemon.info["pid"] and saved["protocol"] == protocol.PROTOCOL_VERSION
    assert saved["socket"] == str(paths.socket)
    # a second start finds the running one instead of launching another
    assert lifecycle.start(paths, daemon.settings, environ=daemon.environ)["already_running"]

    events = list(daemon.client.stream(TaskRequest("prompt", "one two three", model="echo")))
    status = daemon.client.status()
    assert status["requests"] == 1 and status["uptime_s"] >= 0 and status["rss_mb"] > 0
    assert [m["name"] for m in status["models"]] == ["echo"]
    assert status["models"][0]["requests"] == 1
    assert isinstance(events[-1], Done)
    assert wait_for(
        lambda: (
            [m["name"] for m in json.loads(paths.daemon_state.read_text())["models"]] == ["echo"]
        )
    )

    assert lifecycle.stop(paths) is True
    assert not paths.socket.exists() and not paths.daemon_state.exists()
    assert lifecycle.stop(paths) is False
    assert not daemon.client.is_running()


def test_start_failure_names_the_log(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)
    with pytest.raises(DaemonError) as info:
        lifecycle.start(
            daemon.paths,
            daemon.settings,
            environ=daemon.environ,
            extra_args=["--loader", "no_such_module_xyz:factory"],
            timeout_s=30,
        )
    assert str(daemon.paths.daemon_log) in str(info.value)
    assert "no_such_module_xyz" in str(info.value)


# -- streaming, concurrency, cancellation -------------------------------------------------------


def test_stream_tokens_then_done(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    events = list(daemon.client.stream(TaskRequest("prompt", "alpha beta gamma", model="echo")))
    tokens = "".join(e.text for e in events if isinstance(e, Token))
    done = events[-1]
    assert isinstance(done, Done)
    assert tokens == done.text == "alpha beta gamma"
    assert done.backend == "daemon" and done.completion_tokens == 3
    assert done.extra["daemon_ms"] >= 0


def test_two_concurrent_clients_get_their_own_streams(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.01")
    prompts = {
        "echo": " ".join(f"a{i}" for i in range(30)),
        "echo2": " ".join(f"b{i}" for i in range(30)),
    }
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(model: str) -> None:
        try:
            events = list(daemon.client.stream(TaskRequest("prompt", prompts[model], model=model)))
            tokens = "".join(e.text for e in events if isinstance(e, Token))
            assert isinstance(events[-1], Done) and events[-1].text == tokens
            results[model] = tokens
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in prompts for _ in range(1)]
    threads += [threading.Thread(target=run, args=("echo",))]  # two on the same model too
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert results == prompts


def test_closing_the_stream_cancels_within_one_step(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.1", SHELLFISH_TEST_TOKENS="200")
    stream = daemon.client.stream(
        TaskRequest("prompt", "x", model="echo", generation={"max_new_tokens": 200})
    )
    got = 0
    for event in stream:
        if isinstance(event, Token):
            got += 1
            if got == 3:
                break
    stream.close()  # type: ignore[attr-defined]
    started = time.monotonic()
    assert wait_for(lambda: "cancelled after" in daemon.log(), timeout=5)
    elapsed = time.monotonic() - started
    steps = int(daemon.log().split("cancelled after ")[1].split()[0])
    assert steps <= got + 2, daemon.log()  # ~one decode step (0.1 s) after the disconnect
    assert elapsed < 2.0
    assert not daemon.client.status()["models"][0]["busy"]


def test_cancel_command_ends_the_stream(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(SHELLFISH_TEST_DELAY="0.05", SHELLFISH_TEST_TOKENS="200")
    sock = daemon.raw()
    sock.sendall(
        protocol.make_request(
            "generate",
            request_id="g1",
            request={
                "task": "prompt",
                "text": "x",
                "model": "echo",
                "generation": {"max_new_tokens": 200},
            },
        )
    )
    first = b""
    while first.count(b"\n") < 3:
        first += sock.recv(4096)
    sock.sendall(protocol.make_request("cancel", request_id="g1"))
    replies = read_lines(sock)
    final = replies[-1]
    assert final["kind"] == "done" and final["finish_reason"] == "cancelled"
    assert final["id"] == "g1" and final["completion_tokens"] < 20
    sock.close()


def test_text_that_is_not_utf8_is_answered_with_replacement_characters(
    make_daemon: Callable[..., Daemon],
) -> None:
    """Raw bytes that are not UTF-8, and lone surrogates from JSON escapes, become U+FFFD."""
    daemon = make_daemon()
    sock = daemon.raw()
    head = b'{"v": 1, "cmd": "generate", "request": {"task": "prompt", "model": "echo", "text": '
    for text in (b'"caf\xe9 ok"', b'"caf\\udce9 ok"'):
        sock.sendall(head + text + b"}}\n")
        final = read_lines(sock)[-1]
        assert final["kind"] == "done", final
        assert final["texts"] == ["caf\ufffd ok"]
    sock.close()


def test_slow_reader_does_not_block_others(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    words = " ".join(f"word{i}" for i in range(40000))  # ~2 MB of replies: more than buffers hold
    slow = daemon.raw()
    slow.sendall(
        protocol.make_request(
            "generate",
            request_id="slow",
            request={
                "task": "prompt",
                "text": words,
                "model": "echo",
                "generation": {"max_new_tokens": 40000},
            },
        )
    )
    time.sleep(0.5)  # the slow client reads nothing meanwhile
    started = time.monotonic()
    events = list(daemon.client.stream(TaskRequest("prompt", "quick reply", model="echo")))
    assert isinstance(events[-1], Done) and events[-1].text == "quick reply"
    assert time.monotonic() - started < 10
    replies = read_lines(slow)  # ...and the slow client still gets its whole, unmixed reply
    text = "".join(str(r["text"]) for r in replies if r["kind"] == "token")
    assert text == words
    assert replies[-1]["texts"] == [words]
    slow.close()


# -- crashes and stale files --------------------------------------------------------------------


def test_kill_9_leaves_stale_files_that_the_next_client_cleans(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon()
    pid = int(daemon.info["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not state.daemon_alive(daemon.paths))
    assert daemon.paths.socket.exists()  # the crash left its socket behind
    with pytest.raises(DaemonUnavailable, match="stale socket"):
        list(daemon.client.stream(TaskRequest("prompt", "hi", model="echo")))
    assert not daemon.paths.socket.exists() and not daemon.paths.daemon_state.exists()
    assert not daemon.client.is_running()
    # and a restart works on the cleaned directory
    assert daemon.start()["already_running"] is False
    events = list(daemon.client.stream(TaskRequest("prompt", "back again", model="echo")))
    assert isinstance(events[-1], Done) and events[-1].text == "back again"


def test_idle_unload_and_idle_exit(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(SHELLFISH_DAEMON_IDLE_UNLOAD_S="0.3", SHELLFISH_DAEMON_IDLE_EXIT_S="3")
    list(daemon.client.stream(TaskRequest("prompt", "warm up", model="echo")))
    assert [m["name"] for m in daemon.client.status()["models"]] == ["echo"]
    assert wait_for(lambda: daemon.client.status()["models"] == [], timeout=5)
    assert "unloaded idle model echo" in daemon.log()
    assert wait_for(lambda: not state.daemon_alive(daemon.paths), timeout=10)
    assert not daemon.paths.socket.exists() and not daemon.paths.daemon_state.exists()
    assert "exiting" in daemon.log()


# -- bad input ---------------------------------------------------------------------------------


def test_protocol_version_mismatch(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    sock = daemon.raw()
    sock.sendall(json.dumps({"v": 99, "id": 7, "cmd": "status"}).encode() + b"\n")
    reply = read_lines(sock)[-1]
    assert reply["kind"] == "error" and reply["code"] == "version" and reply["id"] == 7
    assert "shellfish daemon restart" in str(reply["hint"])
    sock.close()

    class OldClient(DaemonClient):
        protocol_version = 99

    with pytest.raises(ProtocolError, match="shellfish daemon restart"):
        OldClient(daemon.paths).status()
    assert daemon.client.is_running()


def test_malformed_json_and_oversized_lines_keep_the_connection(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon()
    sock = daemon.raw()
    sock.sendall(b'{"v": 1, "cmd": "status"\n')
    bad = read_lines(sock)[-1]
    assert bad["kind"] == "error" and bad["code"] == "bad_json" and bad["final"] is True
    sock.sendall(b"[1, 2]\n")
    assert read_lines(sock)[-1]["code"] == "bad_json"
    sock.sendall(b'{"v": 1, "cmd": "launch-missiles"}\n')
    assert read_lines(sock)[-1]["code"] == "bad_request"
    sock.sendall(b'{"v": 1, "cmd": "generate", "request": {"task": "nope", "text": "x"}}\n')
    assert "unknown task" in str(read_lines(sock)[-1]["message"])
    big = b'{"v": 1, "cmd": "ping", "pad": "' + b"x" * (protocol.MAX_LINE_BYTES + 10) + b'"}\n'
    sock.sendall(big)
    too_large = read_lines(sock)[-1]
    assert too_large["code"] == "too_large"
    sock.sendall(protocol.make_request("ping", request_id="after"))
    pong = read_lines(sock)[-1]
    assert pong["kind"] == "done" and pong["id"] == "after"
    sock.close()
    assert daemon.client.is_running()


def test_model_not_installed(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    known_but_absent = daemon.settings.models.default  # in the catalog, not installed here
    with pytest.raises(
        ModelNotFound, match=f"not installed - run `shellfish models pull {known_but_absent}`"
    ):
        list(daemon.client.stream(TaskRequest("prompt", "hi", model=known_but_absent)))
    with pytest.raises(ModelNotFound, match="unknown model 'no-such-model'"):
        list(daemon.client.stream(TaskRequest("prompt", "hi", model="no-such-model")))
    with pytest.raises(ModelNotFound):
        daemon.client.load("no-such-model")
    assert daemon.client.is_running()


def test_load_and_unload(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    done = daemon.client.load("echo2")
    assert done.extra["warnings"] == ["echo2 is a test double"]
    assert [m["name"] for m in daemon.client.status()["models"]] == ["echo2"]
    assert daemon.client.unload("echo2") is True
    assert daemon.client.unload("echo2") is False
    assert daemon.client.status()["models"] == []


def test_lines_reply_format_for_widgets(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    request = {"text": "list files", "model": "echo"}
    sock = daemon.raw()
    sock.sendall(protocol.make_request("suggest", request=request))
    done = read_lines(sock)[-1]
    sock.close()
    assert done["kind"] == "done"
    sock = daemon.raw()
    sock.sendall(protocol.make_request("suggest", request=request, reply_format="lines"))
    lines = read_marker_reply(sock)
    cmds = [
        markers.unescape_payload(x.split("\t", 1)[1])
        for x in lines
        if x.startswith("SHELLFISH_CMD\t")
    ]
    warns = [
        markers.unescape_payload(x.split("\t", 1)[1])
        for x in lines
        if x.startswith("SHELLFISH_WARN\t")
    ]
    assert lines[-1] == "SHELLFISH_END"
    assert cmds == done["texts"] and cmds
    assert warns == done["extra"].get("warnings", [])  # type: ignore[union-attr]
    # errors in lines format
    sock = daemon.raw()
    sock.sendall(
        protocol.make_request(
            "suggest", request={"text": "x", "model": "nope"}, reply_format="lines"
        )
    )
    raw = b""
    while not raw.endswith(b"SHELLFISH_END\n"):
        raw += sock.recv(65536)
    sock.close()
    assert raw.decode().splitlines()[0].startswith("SHELLFISH_ERR\t")


def test_client_without_daemon_is_unavailable(tmp_path: Path) -> None:
    paths = Paths(
        data=tmp_path / "d", config=tmp_path / "c", cache=tmp_path / "k", runtime=tmp_path / "r"
    )
    client = DaemonClient(paths)
    assert client.is_running() is False
    with pytest.raises(DaemonUnavailable, match="shellfish daemon start"):
        client.stream(TaskRequest("prompt", "hi"))


def test_cli_status_without_daemon_says_what_to_do(make_env) -> None:  # type: ignore[no-untyped-def]
    from shellfish.cli import main

    env = make_env()
    assert main(["daemon", "status"], env) == 4
    # A status report on stdout, not an error line.
    assert env.stdout.getvalue() == "not running - start it with `shellfish daemon start`\n"
    assert "error" not in env.stderr.getvalue()
    json_env = make_env()
    assert main(["daemon", "status", "--json"], json_env) == 4
    assert json.loads(json_env.stdout.getvalue()) == {"running": False}
    assert main(["daemon", "stop"], env) == 0
    assert "was not running" in env.stderr.getvalue()
    assert main(["daemon", "logs"], env) == 0


def test_cli_status_of_a_running_daemon(  # type: ignore[no-untyped-def]
    make_daemon: Callable[..., Daemon],
    make_env,
) -> None:
    from shellfish.cli import main

    daemon = make_daemon()
    list(daemon.client.stream(TaskRequest("prompt", "hi there", model="echo")))
    env = make_env(SHELLFISH_HOME=str(daemon.home))
    assert main(["daemon", "status"], env) == 0
    out = env.stdout.getvalue()
    assert f"pid {daemon.info['pid']}" in out and "echo (causal" in out and "1 served" in out
    json_env = make_env(SHELLFISH_HOME=str(daemon.home))
    assert main(["daemon", "status", "--json"], json_env) == 0
    assert json.loads(json_env.stdout.getvalue())["models"][0]["name"] == "echo"
    assert main(["daemon", "unload", "echo"], env) == 0 and "echo unloaded" in env.stderr.getvalue()


def test_marker_lines_escape_and_round_trip() -> None:
    command = "printf 'a\\tb\\n' \\\n  | cat"
    out = markers.encode(
        markers.reply_lines(Done(texts=[command, "ls"], extra={"warnings": ["rm: danger"]}))
    )
    lines = out.decode().split("\n")
    assert lines[:4] == [
        "SHELLFISH_CMD\t" + markers.escape_payload(command),
        "SHELLFISH_CMD\tls",
        "SHELLFISH_WARN\trm: danger",
        "SHELLFISH_END",
    ]
    assert "\t" not in lines[0].split("\t", 1)[1] and "\n" not in lines[0]
    assert markers.unescape_payload(lines[0].split("\t", 1)[1]) == command
    err = markers.encode(
        markers.reply_lines(protocol.error_event(ModelNotFound("gone", hint="pull it")))
    )
    assert err == b"SHELLFISH_ERR\tgone - pull it\nSHELLFISH_END\n"


def test_reply_from_a_newer_daemon_is_a_protocol_error() -> None:
    line = json.dumps({"v": 2, "kind": "done", "texts": [], "final": True}).encode()
    with pytest.raises(ProtocolError, match="shellfish daemon restart"):
        protocol.decode_reply(line)
    with pytest.raises(ProtocolError):
        protocol.decode_reply(b"not json")


def test_error_codes_round_trip_to_the_same_exception_class() -> None:
    from shellfish.daemon import protocol
    from shellfish.errors import ConfigError, ModelError, ModelNotFound, PromptTooLong, UsageError

    for cls in (ModelNotFound, ModelError, UsageError, PromptTooLong, ConfigError):
        event = protocol.error_event(cls("boom", hint="do this"))
        back = protocol.exception_for(event)
        assert type(back) is cls and back.hint == "do this"
    assert protocol.error_event(RuntimeError("x")).code == "internal"
