"""Run the OpenAI-compatible app with uvicorn: in the foreground, or in a thread for tests.

Loopback only unless the caller explicitly allows other hosts: the endpoint exposes local
models and, without a token, anyone who can reach the port can use them.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from shellfish.errors import ShellfishError, UsageError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(header: str, names: Collection[str]) -> bool:
    """Whether an HTTP `Host` header names loopback or one of `names` (any port).

    A page on a DNS-rebound name reaches 127.0.0.1 with its own name in `Host`; refusing names
    that are not ours keeps web pages out of a server that has no token.
    """
    if header.startswith("["):
        name = header[1:].partition("]")[0]
    else:
        name = header.rpartition(":")[0] if header.count(":") == 1 else header
    name = name.lower()
    return bool(name) and (is_loopback(name) or name in {n.lower() for n in names})


def accepted_hosts(bind_host: str) -> frozenset[str] | None:
    """The `Host` names (besides loopback) a server bound to `bind_host` answers; None: any.

    A wildcard bind (0.0.0.0, ::) only happens with --allow-remote, where the machine's names
    are not known in advance.
    """
    try:
        if ipaddress.ip_address(bind_host).is_unspecified:
            return None
    except ValueError:
        pass
    return frozenset({bind_host})


def check_host(host: str, *, allow_remote: bool = False) -> None:
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"refusing to serve on {host}: only loopback addresses (127.0.0.1, ::1) by default",
            hint="pass --allow-remote (and set --token) if you really want other machines in",
        )


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ShellfishError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 picks a free one)",
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class RunningServer:
    """A server running in a background thread; `stop()` shuts it down."""

    host: str
    port: int
    _server: Any = field(repr=False, default=None)
    _thread: threading.Thread | None = field(repr=False, default=None)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _uvicorn_server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


def start_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_remote: bool = False,
    ready_timeout: float = 10.0,
) -> RunningServer:
    """Serve `app` from a daemon thread; returns once it accepts connections."""
    check_host(host, allow_remote=allow_remote)
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    server = _uvicorn_server(app, host, actual_port)
    # uvicorn only installs signal handlers on the main thread, so this is safe in a thread.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="shellfish-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ShellfishError(f"the HTTP server did not start on {host}:{actual_port}")
        time.sleep(0.01)
    return RunningServer(host, actual_port, server, thread)


def serve_forever(
    app: Any, *, host: str, port: int, allow_remote: bool = False, on_ready: Any = None
) -> None:
    """Serve in the foreground until Ctrl-C / SIGTERM."""
    check_host(host, allow_remote=allow_remote)
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    server = _uvicorn_server(app, host, actual_port)
    if on_ready is not None:
        on_ready(host, actual_port)
    server.run(sockets=[sock])


def start_pool_server(
    pool: Any,
    settings: Any,
    paths: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    origins: Collection[str] = (),
    max_body_bytes: int | None = None,
) -> RunningServer:
    """The endpoint over `pool`, in a thread: what tests (e.g. the remote fallback's) start."""
    from shellfish.serve.app import MAX_BODY_BYTES, Backend, create_app

    app = create_app(
        Backend(pool, settings, paths),
        token=token,
        hosts=accepted_hosts(host),
        origins=origins,
        max_body_bytes=max_body_bytes or MAX_BODY_BYTES,
    )
    return start_in_thread(app, host=host, port=port)
