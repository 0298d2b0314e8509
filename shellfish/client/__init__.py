"""Clients route a request to whoever answers it: the daemon, this process, or a remote.

Order for local work: the daemon when its socket answers (or it is auto-started), else the
engine in this process. The remote policy (`local` | `remote` | `auto`) decides whether a
remote OpenAI-compatible endpoint may be used; `local` never sends anything anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from shellfish.errors import DaemonError, DaemonUnavailable, ModelNotFound
from shellfish.events import Done, Event, Status, Token
from shellfish.request import TaskRequest

if TYPE_CHECKING:
    from shellfish.environment import Environment


def stream(
    request: TaskRequest,
    env: Environment,
    *,
    backend: str | None = None,
    cancel: threading.Event | None = None,
    record: bool = True,
) -> Iterator[Event]:
    """Yield the events that answer `request`; records the exchange in the local history log.

    `backend`: None follows settings.remote.policy; `local`/`remote`/`auto` override it;
    `daemon` requires the daemon; `inprocess` never uses it. `record=False`: the caller calls
    `record_answer` itself once the answer is shown, so the user never waits on the log.
    """
    policy = backend or env.settings.remote.policy
    events = _route(request, env, policy, cancel)
    if record:
        yield from _recorded(request, env, events)
    else:
        yield from events


def _route(
    request: TaskRequest, env: Environment, policy: str, cancel: threading.Event | None
) -> Iterator[Event]:
    if policy == "remote":
        yield from _remote(request, env)
        return
    try:
        yield from _local(request, env, policy, cancel)
    except ModelNotFound as exc:
        if policy != "auto" or not env.settings.remote.base_url:
            raise
        yield Status(f"{exc.message}; using the remote endpoint", {"fallback": "remote"})
        yield from _remote(request, env)


def _local(
    request: TaskRequest, env: Environment, policy: str, cancel: threading.Event | None
) -> Iterator[Event]:
    if policy != "inprocess":
        from shellfish.client.daemon import DaemonClient

        client = DaemonClient(env.paths)
        running = client.is_running()
        if not running and (policy == "daemon" or env.settings.daemon.autostart):
            from shellfish.client.lifecycle import start_daemon

            start_daemon(env.paths, env.settings)
            running = True
        if running:
            shown = 0  # tokens already passed on: the request can no longer be run again
            try:
                for event in client.stream(request):
                    shown += isinstance(event, Token)
                    yield event
                return
            except DaemonUnavailable as exc:
                if shown:
                    # Running it again here would print the answer a second time after the
                    # part already shown; end with a clear error instead.
                    raise DaemonError(
                        f"the shellfish daemon stopped in the middle of the answer "
                        f"(after {shown} tokens); the answer above is incomplete",
                        hint="run the command again; see `shellfish daemon logs` for the cause",
                    ) from exc
                if policy == "daemon":
                    raise
                yield Status("the daemon stopped answering; running in this process")
    from shellfish.client.local import local_stream

    yield from local_stream(request, env, cancel=cancel)


def _remote(request: TaskRequest, env: Environment) -> Iterator[Event]:
    from shellfish.remote.backend import RemoteBackend

    yield from RemoteBackend(env.settings.remote, env.environ, paths=env.paths).stream(request)


def _recorded(request: TaskRequest, env: Environment, events: Iterator[Event]) -> Iterator[Event]:
    done: Done | None = None
    try:
        for event in events:
            if isinstance(event, Done):
                done = event
            yield event
    finally:
        if done is not None:
            record_answer(request, env, done)


def record_answer(request: TaskRequest, env: Environment, done: Done) -> None:
    """Log one answer when history is enabled; never raises (a failure is one stderr line)."""
    if not env.settings.history.enabled:
        return
    from shellfish.history.log import HistoryBusy, HistoryLog

    try:
        HistoryLog(env.paths.history_db).record(request, done)
    except HistoryBusy:
        env.warn("history busy (another shellfish is writing it): this answer was not recorded")
    except Exception as exc:  # the log must never break an answer
        env.warn(f"could not write the history log: {exc}")
