"""Start, stop, restart the daemon process and read its log: the client's side of the daemon
(like `DaemonClient`, it only talks to the daemon; it never imports the server).

`start` launches a fresh, detached interpreter (`python -m shellfish.daemon.server`, its own
session, stdout/stderr appended to the daemon log) and waits until it answers a ping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shellfish.daemon import state
from shellfish.errors import DaemonError, DaemonUnavailable
from shellfish.paths import Paths, ensure_private_dir

if TYPE_CHECKING:
    from shellfish.config import Settings

LOG_ROTATE_BYTES = 5 * 1024 * 1024


def start(
    paths: Paths,
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Start the daemon unless one runs; return its ping reply (pid, protocol).

    Raises DaemonError with the log path when it does not become ready in time or exits.
    """
    from shellfish.client.daemon import DaemonClient

    client = DaemonClient(paths)
    with contextlib.suppress(DaemonUnavailable):
        return {**client.ping(), "already_running": True}
    state.check_socket_path(paths.socket)
    ensure_private_dir(paths.runtime)
    paths.daemon_log.parent.mkdir(parents=True, exist_ok=True)
    _rotate(paths)
    limit = settings.daemon.start_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + limit
    # A daemon holding the lock but not answering yet is starting: wait for it instead.
    process = None if state.daemon_alive(paths) else _spawn(paths, environ, extra_args)
    while True:
        code = process.poll() if process is not None else None
        if code is not None:
            raise DaemonError(
                f"the daemon exited with status {code} while starting{_last_line(paths)}",
                hint=f"see the log: {paths.daemon_log}",
            )
        with contextlib.suppress(DaemonUnavailable):
            return {**client.ping(), "already_running": process is None}
        if time.monotonic() > deadline:
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
            raise DaemonError(
                f"the daemon did not become ready within {limit:g} s{_last_line(paths)}",
                hint=f"see the log: {paths.daemon_log}; raise daemon.start_timeout_s if the "
                "machine is slow",
            )
        time.sleep(0.02)


def _spawn(
    paths: Paths, environ: Mapping[str, str] | None, extra_args: Sequence[str]
) -> subprocess.Popen[bytes]:
    env = dict(os.environ if environ is None else environ)
    command = [sys.executable, "-m", "shellfish.daemon.server", *extra_args]
    log_fd = os.open(paths.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=env,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    finally:
        os.close(log_fd)


#: The name the client router uses.
start_daemon = start


def stop(paths: Paths, *, timeout_s: float = 10.0) -> bool:
    """Stop a running daemon (shutdown request, then SIGTERM, then SIGKILL).

    Returns False when none was running. Stale files are cleaned either way.
    """
    from shellfish.client.daemon import DaemonClient

    info = state.read_state(paths) or {}
    pid = info.get("pid")
    was_alive = state.daemon_alive(paths)
    try:
        pid = DaemonClient(paths).shutdown().get("pid", pid)
    except DaemonUnavailable:
        if not state.daemon_alive(paths):
            # None ran, or (on a busy machine) it took the request and exited before its
            # reply came: it was running a moment ago, so this stopped it.
            state.cleanup_stale(paths)
            return was_alive
    # Graceful first; then SIGTERM at half the timeout; SIGKILL at the end.
    started = time.monotonic()
    sent_term = False
    while state.daemon_alive(paths):
        waited = time.monotonic() - started
        if waited > timeout_s:
            if isinstance(pid, int):
                _kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            break
        if not sent_term and waited > timeout_s / 2 and isinstance(pid, int):
            _kill(pid, signal.SIGTERM)
            sent_term = True
        time.sleep(0.05)
    if state.daemon_alive(paths):
        raise DaemonError(
            f"the daemon (pid {pid}) did not stop", hint=f"kill it by hand: kill -9 {pid}"
        )
    state.cleanup_stale(paths)
    return True


def restart(
    paths: Paths,
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    stop(paths)
    return start(paths, settings, environ=environ, extra_args=extra_args)


def status(paths: Paths) -> dict[str, Any]:
    """The live status of a running daemon; DaemonUnavailable when none runs."""
    from shellfish.client.daemon import DaemonClient

    return DaemonClient(paths).status()


def read_log(paths: Paths, lines: int = 50) -> list[str]:
    """The last `lines` lines of the daemon log (empty when there is no log yet)."""
    try:
        with open(paths.daemon_log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:] if lines > 0 else []


def _rotate(paths: Paths) -> None:
    with contextlib.suppress(OSError):
        if paths.daemon_log.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(paths.daemon_log, paths.daemon_log.with_suffix(".log.1"))


def _last_line(paths: Paths) -> str:
    tail = [line for line in read_log(paths, 5) if line.strip()]
    return f": {tail[-1].strip()}" if tail else ""


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
