"""The daemon client: one connection per call, events streamed back as `shellfish.events`.

Failures have clear types so callers can choose what to do: `DaemonUnavailable` when nothing
answers on the socket (a stale socket from a crashed daemon is cleaned up on the way - fall back
to in-process generation), `ProtocolError` when the daemon speaks another protocol version
(restart it), and the daemon's error replies are raised as the matching `ShellfishError`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import Iterator
from typing import Any

from shellfish.daemon import protocol, state
from shellfish.errors import DaemonUnavailable, ProtocolError
from shellfish.events import Done, Error, Event
from shellfish.paths import Paths
from shellfish.request import TaskRequest

_ids = itertools.count(1)


class DaemonClient:
    #: The protocol version this client speaks (a class attribute so tests can model old clients).
    protocol_version = protocol.PROTOCOL_VERSION

    def __init__(
        self, paths: Paths, *, connect_timeout: float = 2.0, control_timeout: float = 30.0
    ) -> None:
        self.paths = paths
        self.connect_timeout = connect_timeout
        self.control_timeout = control_timeout

    # -- public API -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when a daemon answers a ping (cleans up stale files when it does not)."""
        try:
            self._call("ping", timeout=min(self.control_timeout, 5.0))
        except DaemonUnavailable:
            return False
        return True

    def stream(self, request: TaskRequest) -> Iterator[Event]:
        """Stream Token/Status events then the final Done; error replies raise.

        Connects and sends at call time, so `DaemonUnavailable` comes before any event (the
        caller can still fall back). Closing the returned generator early sends `cancel` and
        disconnects; the daemon stops the generation at its next decode step.
        """
        sock = self._connect()
        request_id = f"c{os.getpid()}-{next(_ids)}"
        try:
            self._send(
                sock,
                protocol.make_request(
                    "generate",
                    request_id=request_id,
                    version=self.protocol_version,
                    request=request.to_dict(),
                ),
            )
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)  # generation (and a first load) may take a while
        return self._stream(sock, request_id)

    def _stream(self, sock: socket.socket, request_id: str) -> Iterator[Event]:
        finished = False
        try:
            for event, final in self._replies(sock):
                if final:
                    finished = True
                    if isinstance(event, Error):
                        raise protocol.exception_for(event)
                yield event
                if final:
                    return
        finally:
            if not finished:
                with contextlib.suppress(OSError):
                    sock.sendall(
                        protocol.make_request(
                            "cancel", request_id=request_id, version=self.protocol_version
                        )
                    )
            sock.close()

    def status(self) -> dict[str, Any]:
        return self._call("status").extra

    def shutdown(self) -> dict[str, Any]:
        return self._call("shutdown").extra

    def ping(self) -> dict[str, Any]:
        return self._call("ping").extra

    def load(self, name: str) -> Done:
        return self._call("load", timeout=None, model=name)

    def unload(self, name: str) -> bool:
        return bool(self._call("unload", model=name).extra.get("unloaded"))

    # -- internals ---------------------------------------------------------------------------

    def _call(self, cmd: str, *, timeout: float | None = -1.0, **fields: Any) -> Done:
        sock = self._connect()
        try:
            sock.settimeout(self.control_timeout if timeout == -1.0 else timeout)
            self._send(
                sock,
                protocol.make_request(
                    cmd, request_id=f"c{next(_ids)}", version=self.protocol_version, **fields
                ),
            )
            for event, final in self._replies(sock):
                if not final:
                    continue
                if isinstance(event, Error):
                    raise protocol.exception_for(event)
                if isinstance(event, Done):
                    return event
                raise ProtocolError(
                    f"the daemon ended '{cmd}' with a {event.kind} event",
                    hint=protocol.RESTART_HINT,
                )
        except TimeoutError as exc:
            raise DaemonUnavailable(
                f"the shellfish daemon did not answer '{cmd}' in time",
                hint="check `shellfish daemon logs`, or `shellfish daemon restart`",
            ) from exc
        finally:
            sock.close()
        raise DaemonUnavailable(
            f"the daemon closed the connection during '{cmd}'", hint="check `shellfish daemon logs`"
        )

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(str(self.paths.socket))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            removed = state.cleanup_stale(self.paths)
            detail = " (removed a stale socket left by a crashed daemon)" if removed else ""
            raise DaemonUnavailable(
                f"the shellfish daemon is not running{detail}",
                hint="start it with `shellfish daemon start`",
            ) from exc
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(
                f"cannot reach the shellfish daemon at {self.paths.socket}: {exc}",
                hint="try `shellfish daemon restart`",
            ) from exc
        return sock

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError as exc:
            raise DaemonUnavailable(
                f"the shellfish daemon went away: {exc}",
                hint="try again; `shellfish daemon restart` if it persists",
            ) from exc

    def _replies(self, sock: socket.socket) -> Iterator[tuple[Event, bool]]:
        """Decode reply lines until the final one; a dropped connection is DaemonUnavailable."""
        buffer = b""
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0:
                line, buffer = buffer[:newline], buffer[newline + 1 :]
                if not line.strip():
                    continue
                event, final = protocol.decode_reply(line)
                yield event, final
                if final:
                    return
                continue
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as exc:
                chunk = b""
                error: Exception | None = exc
            else:
                error = None
            if not chunk:
                raise DaemonUnavailable(
                    "the shellfish daemon closed the connection before the reply was complete",
                    hint="it may have crashed - see `shellfish daemon logs`",
                ) from error
            buffer += chunk
