"""One client connection: a reader, a request processor and a writer, each in its own thread.

- The reader frames request lines (at most `MAX_LINE_BYTES`), answers `cancel` at once, and
  queues the rest; end-of-file means the client is gone, which cancels its generation.
- The processor serves queued requests one at a time (a generation streams from here).
- The writer drains an `Outbox` onto the socket. Generation never blocks on a slow reader:
  the outbox never blocks its producer; when it is full, consecutive tokens are merged, so its
  length stays bounded and its size is bounded by the generation's own output.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from shellfish.daemon import protocol
from shellfish.daemon.protocol import BadRequest, Request
from shellfish.events import Error, Event, Token
from shellfish.shell import markers

log = logging.getLogger("shellfish.daemon")

MAX_PENDING_EVENTS = 256
MAX_PENDING_CHARS = 16 * 1024 * 1024


@dataclasses.dataclass
class _Item:
    event: Event
    final: bool
    request_id: Any
    reply_format: str


class Outbox:
    """A never-blocking, bounded queue of reply events for one connection."""

    def __init__(
        self, max_events: int = MAX_PENDING_EVENTS, max_chars: int = MAX_PENDING_CHARS
    ) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._chars = 0
        self.max_events = max_events
        self.max_chars = max_chars
        self.overflowed = False

    def put(self, item: _Item) -> bool:
        """Queue `item`; False when the connection is closed or hopelessly behind."""
        with self._cond:
            if self._closed:
                return False
            size = len(item.event.text) if isinstance(item.event, Token) else 0
            last = self._items[-1] if self._items else None
            if (
                len(self._items) >= self.max_events
                and last is not None
                and isinstance(last.event, Token)
                and isinstance(item.event, Token)
                and last.event.index == item.event.index
                and not last.final
                and last.request_id == item.request_id
            ):
                last.event = dataclasses.replace(last.event, text=last.event.text + item.event.text)
            else:
                self._items.append(item)
            self._chars += size
            if self._chars > self.max_chars:
                self.overflowed = True
                return False
            self._cond.notify()
            return True

    def get(self) -> _Item | None:
        """The next item, waiting for one; None once closed and drained."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item.event, Token):
                self._chars -= len(item.event.text)
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> None:
        with self._cond:
            self._items.clear()
            self._chars = 0
            self._closed = True
            self._cond.notify_all()


class Connection:
    """Serves one accepted socket until the client leaves or the daemon stops."""

    def __init__(
        self, sock: socket.socket, dispatch: Callable[[Connection, Request], None], number: int
    ) -> None:
        self.sock = sock
        self.number = number
        self._dispatch = dispatch
        self.outbox = Outbox()
        self._requests: queue.Queue[Request | None] = queue.Queue()
        self._cancel_lock = threading.Lock()
        self._cancel: threading.Event | None = None  # the running generation's cancel flag
        self.gone = threading.Event()  # the client disconnected (or the daemon is stopping)
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (
            ("reader", self._read_loop),
            ("proc", self._process_loop),
            ("writer", self._write_loop),
        ):
            thread = threading.Thread(target=target, name=f"conn{self.number}-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Cancel whatever runs and disconnect (daemon shutdown)."""
        self._client_gone()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    @property
    def finished(self) -> bool:
        return all(not t.is_alive() for t in self._threads)

    # -- used by command handlers --------------------------------------------------------------

    def send(self, event: Event, request: Request, *, final: bool) -> bool:
        """Queue a reply event; False if the client is gone (the caller should stop)."""
        if self.gone.is_set():
            return False
        if request.reply_format == "lines" and not final:
            return True  # widgets only want the final markers
        ok = self.outbox.put(_Item(event, final, request.id, request.reply_format))
        if not ok and self.outbox.overflowed:
            log.warning("connection %d: client is not reading; dropping it", self.number)
            self._client_gone()
        return ok

    def begin_generation(self) -> threading.Event:
        with self._cancel_lock:
            self._cancel = threading.Event()
            if self.gone.is_set():
                self._cancel.set()
            return self._cancel

    def end_generation(self) -> None:
        with self._cancel_lock:
            self._cancel = None

    def cancel_generation(self) -> None:
        with self._cancel_lock:
            if self._cancel is not None:
                self._cancel.set()

    # -- threads -----------------------------------------------------------------------------------

    def _client_gone(self) -> None:
        self.gone.set()
        self.cancel_generation()
        self._requests.put(None)

    def _read_loop(self) -> None:
        buffer = b""
        discarding = False  # inside an oversized line: drop bytes until its newline
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        if not discarding and len(buffer) > protocol.MAX_LINE_BYTES:
                            self._reject(
                                BadRequest(
                                    f"request line is larger than {protocol.MAX_LINE_BYTES} bytes",
                                    "too_large",
                                )
                            )
                            discarding = True
                        if discarding:
                            buffer = b""
                        break
                    line, buffer = buffer[:newline], buffer[newline + 1 :]
                    if discarding:
                        discarding = False
                        continue
                    self._handle_line(line.strip())
        finally:
            self._client_gone()

    def _handle_line(self, line: bytes) -> None:
        if not line:
            return
        try:
            request = protocol.parse_request(line)
        except BadRequest as exc:
            self._reject(exc)
            return
        if request.cmd == "cancel":
            self.cancel_generation()  # no reply of its own: the cancelled stream ends instead
            return
        self._requests.put(request)

    def _reject(self, exc: BadRequest) -> None:
        self.outbox.put(_Item(exc.to_event(), True, exc.request_id, exc.reply_format))

    def _process_loop(self) -> None:
        try:
            while not self.gone.is_set():
                request = self._requests.get()
                if request is None or self.gone.is_set():
                    break
                self._dispatch(self, request)
        finally:
            self.outbox.close()

    def _write_loop(self) -> None:
        try:
            while True:
                item = self.outbox.get()
                if item is None:
                    break
                if item.reply_format == "lines":
                    data = markers.encode(markers.reply_lines(item.event)) if item.final else b""
                else:
                    data = protocol.encode_event(
                        item.event, final=item.final, request_id=item.request_id
                    )
                try:
                    self.sock.sendall(data)
                except OSError:  # the client went away: stop its generation
                    self._client_gone()
                    self.outbox.discard()
                    break
        finally:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()


def internal_error(message: str) -> Error:
    return Error(message=message, code="internal", hint="see the log (`shellfish daemon logs`)")
