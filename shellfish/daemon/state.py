"""The daemon's files in the runtime dir: the lock, the status file, and stale-file cleanup.

A running daemon holds an exclusive `flock` on `daemon.lock` for its whole life. The kernel
drops that lock when the process dies (even on `kill -9`), so "is a daemon alive?" is answered
by trying the lock, never by trusting a pid that may have been reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from shellfish.paths import Paths

# sun_path is 108 bytes on Linux, 104 on macOS; keep room for the NUL.
MAX_SOCKET_PATH = 103


def lock_path(paths: Paths) -> Path:
    return paths.runtime / "daemon.lock"


def try_lock(paths: Paths) -> IO[str] | None:
    """Take the daemon lock (kept while the returned file stays open), or None if held."""
    path = lock_path(paths)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - lives as long as the daemon
    os.chmod(path, 0o600)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def daemon_alive(paths: Paths) -> bool:
    """True while some process holds the daemon lock."""
    path = lock_path(paths)
    if not path.exists():
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def read_state(paths: Paths) -> dict[str, Any] | None:
    """The status file the daemon writes, or None if absent / unreadable."""
    try:
        data = json.loads(paths.daemon_state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(paths: Paths, state: dict[str, Any]) -> None:
    """Atomically replace the status file (0600)."""
    tmp = paths.daemon_state.with_name(f".{paths.daemon_state.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(tmp, paths.daemon_state)


def cleanup_stale(paths: Paths) -> list[Path]:
    """Remove the socket and status file left by a dead daemon; return what was removed.

    Does nothing while a daemon holds the lock (it may still be starting up).
    """
    if daemon_alive(paths):
        return []
    removed = []
    for path in (paths.socket, paths.daemon_state):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def check_socket_path(path: Path) -> None:
    from shellfish.errors import DaemonError

    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise DaemonError(
            f"the daemon socket path is too long for a Unix socket ({path})",
            hint="set SHELLFISH_HOME (or XDG_RUNTIME_DIR) to a shorter directory",
        )
