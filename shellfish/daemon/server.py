"""The daemon: keeps models warm and answers the protocol (docs/protocol.md) on a Unix socket.

Run as a fresh interpreter by `shellfish daemon start` (`python -m shellfish.daemon.server`);
stdout/stderr go to the daemon log. Each client connection is served by its own threads
(`connection.py`); commands are `cmd_<name>` methods. The main thread accepts connections and
does housekeeping: idle model unload, idle exit, the status file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import importlib
import itertools
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from shellfish import __version__
from shellfish.daemon import protocol, state
from shellfish.daemon.connection import BUSY_HINT, Budget, Connection, internal_error
from shellfish.daemon.protocol import Request
from shellfish.errors import DaemonError, ShellfishError
from shellfish.events import Done, Error
from shellfish.paths import Paths, ensure_private_dir
from shellfish.store.pool import Loader, ModelPool

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.request import TaskRequest

log = logging.getLogger("shellfish.daemon")

#: Connections served at once; one more is told `busy` and closed (each costs 3 threads, 1 fd).
MAX_CONNECTIONS = 64
# accept() errors that mean "out of a resource" (fds, kernel memory): back off and retry
# instead of spinning on a listener that stays readable.
_ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_BACKOFF_S = (0.05, 1.0)  # first and longest pause


class DaemonServer:
    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        *,
        loader: Loader | None = None,
        pool: ModelPool | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.pool = pool or ModelPool(paths, settings, loader=loader, long_lived=True)
        self.started_at = time.time()
        self.requests_served = 0
        self._active = 0
        self._last_activity = time.monotonic()
        self._counter_lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._numbers = itertools.count(1)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._listener: socket.socket | None = None
        self._socket_ino: int | None = None
        self._lock_handle: IO[str] | None = None
        self._state_dirty = True
        self.budget = Budget()
        self.max_connections = MAX_CONNECTIONS
        self._accept_backoff = 0.0  # current pause after an exhausted accept; 0 when fine
        self._accept_paused_until = 0.0

    # -- running ----------------------------------------------------------------------------------

    def bind(self) -> None:
        """Take the lock and listen on the socket (atomically swapped into place)."""
        ensure_private_dir(self.paths.runtime)
        state.check_socket_path(self.paths.socket)
        deadline = time.monotonic() + 1.0
        while (handle := state.try_lock(self.paths)) is None:
            if time.monotonic() > deadline:
                raise DaemonError(
                    "another shellfish daemon is already running",
                    hint="see `shellfish daemon status`",
                )
            time.sleep(0.05)
        self._lock_handle = handle
        # Bind under a temporary name and rename once listening, so a client never sees a
        # socket file that refuses connections and mistakes it for a stale one.
        tmp = self.paths.runtime / f".d{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(tmp))
        finally:
            os.umask(old_umask)
        os.chmod(tmp, 0o600)
        listener.listen(64)
        os.replace(tmp, self.paths.socket)
        self._socket_ino = os.stat(self.paths.socket).st_ino
        self._listener = listener
        self.write_state()
        log.info(
            "daemon %s (protocol %d) listening on %s, pid %d",
            __version__,
            protocol.PROTOCOL_VERSION,
            self.paths.socket,
            os.getpid(),
        )

    def serve_forever(self) -> None:
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        tick = _tick(self.settings)
        try:
            while not self._stop.is_set():
                watched = [self._wake_r]
                timeout = tick
                paused_for = self._accept_paused_until - time.monotonic()
                if paused_for > 0:  # out of fds: leave the backlog alone for a while
                    timeout = min(tick, paused_for)
                else:
                    watched.append(self._listener.fileno())
                try:
                    readable, _, _ = select.select(watched, [], [], timeout)
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    continue
                if self._wake_r in readable:
                    os.read(self._wake_r, 4096)
                if self._listener.fileno() in readable and not self._stop.is_set():
                    self._accept()
                self._housekeeping()
        finally:
            self._cleanup()

    def request_shutdown(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except OSError as exc:
            if exc.errno in _ACCEPT_EXHAUSTED:
                self._back_off_accepting(exc)
            return
        if self._accept_backoff:
            log.info("accepting connections again")
            self._accept_backoff = 0.0
        with self._counter_lock:
            self._connections = {c for c in self._connections if not c.finished}
            full = len(self._connections) >= self.max_connections
            self._last_activity = time.monotonic()
        if full:
            _refuse(sock, f"the daemon serves {self.max_connections} connections already")
            return
        conn = Connection(sock, self._dispatch, next(self._numbers), self.budget)
        try:
            conn.start()
        except RuntimeError as exc:  # cannot start threads: out of memory or a process limit
            log.warning("cannot serve a new connection: %s", exc)
            self._back_off_accepting(exc)
            return
        with self._counter_lock:
            self._connections.add(conn)

    def _back_off_accepting(self, exc: BaseException) -> None:
        low, high = ACCEPT_BACKOFF_S
        if not self._accept_backoff:
            log.warning("cannot accept connections (%s): pausing accept", exc)
        self._accept_backoff = min(high, self._accept_backoff * 2) if self._accept_backoff else low
        self._accept_paused_until = time.monotonic() + self._accept_backoff

    def _housekeeping(self) -> None:
        with self._counter_lock:
            finished = {c for c in self._connections if c.finished}
            self._connections -= finished
            idle = not self._connections and self._active == 0
            idle_for = time.monotonic() - self._last_activity
        unload_after = self.settings.daemon.idle_unload_s
        if unload_after > 0:
            for name in self.pool.unload_idle(unload_after):
                log.info("unloaded idle model %s", name)
                self._state_dirty = True
        exit_after = self.settings.daemon.idle_exit_s
        if exit_after > 0 and idle and idle_for >= exit_after:
            log.info("idle for %.0f s: exiting", idle_for)
            self._stop.set()
            return
        if self._state_dirty:
            self.write_state()

    def _cleanup(self) -> None:
        with self._counter_lock:
            connections = list(self._connections)
        for conn in connections:
            conn.stop()
        for conn in connections:
            conn.join(2.0)
        if self._listener is not None:
            self._listener.close()
        # Remove the socket only if it is still ours (a newer daemon may have replaced it).
        with contextlib.suppress(OSError):
            if os.stat(self.paths.socket).st_ino == self._socket_ino:
                self.paths.socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.paths.daemon_state.unlink()
        self.pool.close()
        if self._lock_handle is not None:
            self._lock_handle.close()
        log.info("daemon stopped")

    # -- state ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        from shellfish.store.pool import process_rss

        with self._counter_lock:
            connections = sum(not c.finished for c in self._connections)
            active = self._active
        return {
            "pid": os.getpid(),
            "socket": str(self.paths.socket),
            "protocol": protocol.PROTOCOL_VERSION,
            "version": __version__,
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "requests": self.requests_served,
            "active": active,
            "connections": connections,
            "queued_requests": self.budget.requests,
            "rss_mb": round(process_rss() / 2**20, 1),
            "memory_budget_mb": round(self.pool.memory_budget_bytes / 2**20, 1),
            "idle_unload_s": self.settings.daemon.idle_unload_s,
            "idle_exit_s": self.settings.daemon.idle_exit_s,
            "log": str(self.paths.daemon_log),
            "models": self.pool.loaded(),
        }

    def write_state(self) -> None:
        self._state_dirty = False
        try:
            state.write_state(self.paths, self.status())
        except OSError as exc:
            log.warning("could not write %s: %s", self.paths.daemon_state, exc)

    # -- dispatch ---------------------------------------------------------------------------------

    def _dispatch(self, conn: Connection, request: Request) -> None:
        with self._counter_lock:
            self._active += 1
        try:
            if request.task is not None:
                self.cmd_generate(conn, request)
            else:
                handler = getattr(self, f"cmd_{request.cmd}")
                conn.send(handler(request), request, final=True)
        except ShellfishError as exc:
            conn.send(protocol.error_event(exc), request, final=True)
        except Exception as exc:
            log.exception("request %r failed", request.cmd)
            conn.send(protocol.error_event(exc), request, final=True)
        finally:
            with self._counter_lock:
                self._active -= 1
                self._last_activity = time.monotonic()
            self._state_dirty = True

    def cmd_generate(self, conn: Connection, request: Request) -> None:
        assert request.task is not None
        started = time.perf_counter()
        cancel = conn.begin_generation()
        from shellfish.store.pool import queue_waited_ms
        from shellfish.tasks import run_task

        waited_before = queue_waited_ms()

        events = run_task(request.task, self.pool, self.settings, self.paths, cancel=cancel)
        try:
            for event in events:
                if isinstance(event, Done):
                    extra = {
                        **event.extra,
                        "daemon_ms": (time.perf_counter() - started) * 1000,
                        # every wait of this request for a busy model (suggest runs two)
                        "queue_ms": queue_waited_ms() - waited_before,
                    }
                    done = dataclasses.replace(event, backend="daemon", extra=extra)
                    conn.send(done, request, final=True)
                    with self._counter_lock:
                        self.requests_served += 1
                    if request.reply_format == "lines":
                        self._record_widget_exchange(request.task, done)
                    return
                if isinstance(event, Error):
                    conn.send(event, request, final=True)
                    return
                if not conn.send(event, request, final=False):
                    cancel.set()  # the client is gone: the runner stops at its next step
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()
            conn.end_generation()
        conn.send(internal_error("generation ended without a result"), request, final=True)

    def _record_widget_exchange(self, task: TaskRequest, done: Done) -> None:
        """Log a shell widget's exchange in the history (after the reply went out).

        Clients that go through `shellfish.client.stream` record their own exchanges; a
        `lines` request comes from zsh's socket fast path, which has no Python to do it.
        """
        if not self.settings.history.enabled:
            return
        try:
            from shellfish.history.log import HistoryLog

            HistoryLog(self.paths.history_db).record(task, done)
        except Exception:  # the log must never break the daemon
            log.exception("could not write the history log")

    def cmd_load(self, request: Request) -> Done:
        assert request.model is not None
        started = time.perf_counter()
        was_loaded = self.pool.is_loaded(request.model)
        self.pool.get(request.model)
        self._state_dirty = True
        return Done(
            texts=[],
            model=request.model,
            backend="daemon",
            load_ms=0.0 if was_loaded else (time.perf_counter() - started) * 1000,
            extra={"warnings": self.pool.warnings(request.model), "already_loaded": was_loaded},
        )

    def cmd_unload(self, request: Request) -> Done:
        assert request.model is not None
        unloaded = self.pool.unload(request.model)
        self._state_dirty = True
        return Done(texts=[], model=request.model, backend="daemon", extra={"unloaded": unloaded})

    def cmd_status(self, request: Request) -> Done:
        status = self.status()
        status["active"] = max(0, status["active"] - 1)  # not counting this status request
        return Done(texts=[], backend="daemon", extra=status)

    def cmd_ping(self, request: Request) -> Done:
        return Done(
            texts=[],
            backend="daemon",
            extra={"pid": os.getpid(), "protocol": protocol.PROTOCOL_VERSION},
        )

    def cmd_shutdown(self, request: Request) -> Done:
        self.request_shutdown()
        return Done(texts=[], backend="daemon", extra={"pid": os.getpid()})


def _refuse(sock: socket.socket, message: str) -> None:
    """Answer a connection we cannot serve with one `busy` error line, then close it."""
    try:
        sock.settimeout(0.2)  # the accept loop must not wait on this client
        sock.sendall(
            protocol.encode_event(Error(message=message, code="busy", hint=BUSY_HINT), final=True)
        )
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


def _tick(settings: Settings) -> float:
    """How often housekeeping runs: often enough for the configured idle times."""
    limits = [t for t in (settings.daemon.idle_unload_s, settings.daemon.idle_exit_s) if t > 0]
    return max(0.05, min([2.0, *(t / 4 for t in limits)]))


def _load_loader(spec: str, paths: Paths, settings: Settings) -> Loader:
    """`module:factory`, where factory(paths, settings) returns a Loader (tests use this)."""
    module_name, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), attr or "loader_factory")
    loader: Loader = factory(paths, settings)
    return loader


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shellfish.daemon.server")
    parser.add_argument("--loader", help="module:factory returning a model loader (for tests)")
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODEL",
        help="load MODEL right after start",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    from shellfish.config import load_settings
    from shellfish.paths import get_paths

    try:
        paths = get_paths()
        settings = load_settings(paths.config_file)
        loader = _load_loader(args.loader, paths, settings) if args.loader else None
        server = DaemonServer(paths, settings, loader=loader)
        server.bind()
    except ShellfishError as exc:
        log.error("cannot start: %s", exc)
        return int(exc.exit_status)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: server.request_shutdown())
    # Import the task code now, off the accept path, so the first request does not pay for it.
    threading.Thread(target=_warm_imports, daemon=True).start()
    for name in args.preload:
        threading.Thread(target=_preload, args=(server, name), daemon=True).start()
    server.serve_forever()
    return 0


def _warm_imports() -> None:
    for module in (
        "shellfish.tasks",
        "shellfish.suggest",
        "shellfish.tasks.prompts",
        "shellfish.store.routing",
        "shellfish.store.store",
    ):
        try:
            importlib.import_module(module)
        except Exception as exc:  # only a warm-up: the request path reports real errors
            log.warning("could not pre-import %s: %s", module, exc)


def _preload(server: DaemonServer, name: str) -> None:
    try:
        server.pool.get(name)
        log.info("preloaded %s", name)
    except ShellfishError as exc:
        log.warning("could not preload %s: %s", name, exc)


if __name__ == "__main__":
    sys.exit(main())
