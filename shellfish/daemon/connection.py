"""One client connection: a reader, a request processor and a writer, each in its own thread.

- The reader frames request lines (at most `MAX_LINE_BYTES`), answers `cancel` at once, and
  queues the rest; end-of-file means the client is gone, which cancels its generation.
- The processor serves queued requests one at a time (a generation streams from here).
- The writer drains an `Outbox` onto the socket.

Memory per connection and in total is bounded, and nothing is dropped silently:
- Queued requests: at most `MAX_QUEUED_REQUESTS` (and `MAX_QUEUED_REQUEST_BYTES` of request
  lines) per connection, and the `Budget` totals across connections; a request over a bound is
  answered at once with a `busy` error.
- Queued replies: the reader stops reading while the connection has more than
  `PAUSE_READING_BYTES` of replies unsent (or all connections together are over the budget), so a
  client that writes without reading is held back by its own socket buffer. Generation never
  blocks on a slow reader: the outbox never blocks its producer; when it is long, consecutive
  tokens are merged; a client that lets `MAX_PENDING_BYTES` pile up (or pushes the total over the
  budget) gets its unsent replies replaced by one final `busy` error, and is disconnected.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
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
MAX_PENDING_BYTES = 16 * 1024 * 1024  # unsent reply bytes per connection before it is dropped
PAUSE_READING_BYTES = 1024 * 1024  # unsent reply bytes per connection that pause its reader
MAX_QUEUED_REQUESTS = 16  # per connection, besides the one being served
MAX_QUEUED_REQUEST_BYTES = 4 * 1024 * 1024  # request line bytes queued per connection

BUSY_HINT = "the daemon is overloaded or the client is not reading its replies; try again"


class Budget:
    """Totals shared by every connection of one daemon: queued requests and unsent replies."""

    def __init__(
        self,
        max_requests: int = 256,
        max_request_bytes: int = 64 * 1024 * 1024,
        max_reply_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        self.max_requests = max_requests
        self.max_request_bytes = max_request_bytes
        self.max_reply_bytes = max_reply_bytes
        self._lock = threading.Lock()
        self.requests = 0
        self.request_bytes = 0
        self.reply_bytes = 0

    def take_request(self, size: int) -> bool:
        with self._lock:
            if (
                self.requests >= self.max_requests
                or self.request_bytes + size > self.max_request_bytes
            ):
                return False
            self.requests += 1
            self.request_bytes += size
            return True

    def give_request(self, size: int) -> None:
        with self._lock:
            self.requests -= 1
            self.request_bytes -= size

    def add_reply_bytes(self, size: int) -> bool:
        """Count `size` more unsent bytes (negative: sent); False when over the budget."""
        with self._lock:
            self.reply_bytes += size
            return self.reply_bytes <= self.max_reply_bytes

    def replies_over(self) -> bool:
        with self._lock:
            return self.reply_bytes > self.max_reply_bytes


@dataclasses.dataclass
class _Item:
    event: Event
    final: bool
    request_id: Any
    reply_format: str
    data: bytes | None = None  # the encoded reply; None until (re-)encoded
    size: int = 0  # bytes counted against the bounds for this item

    def encode(self) -> bytes:
        if self.data is None:
            if self.reply_format == "lines":
                self.data = markers.encode(markers.reply_lines(self.event)) if self.final else b""
            else:
                self.data = protocol.encode_event(
                    self.event, final=self.final, request_id=self.request_id
                )
        return self.data


class Outbox:
    """A never-blocking, bounded queue of encoded reply events for one connection."""

    def __init__(
        self,
        max_events: int = MAX_PENDING_EVENTS,
        max_bytes: int = MAX_PENDING_BYTES,
        budget: Budget | None = None,
    ) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._bytes = 0
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.budget = budget or Budget()
        self.overflowed = False

    @property
    def pending_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def put(self, item: _Item) -> bool:
        """Queue `item`; False when the connection is closed or hopelessly behind.

        Hopelessly behind (over `max_bytes`, or the budget over its total): the unsent replies
        are replaced by one final `busy` error for `item`'s request, `overflowed` is set and the
        outbox closes, so the writer sends that error and disconnects.
        """
        with self._cond:
            if self._closed:
                return False
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
                # Encoded once, when sent: re-encoding the growing text per token is quadratic.
                last.event = dataclasses.replace(last.event, text=last.event.text + item.event.text)
                last.data = None
                grown = len(json.dumps(item.event.text, ensure_ascii=False).encode()) - 2
                last.size += grown
            else:
                item.size = grown = len(item.encode())
                self._items.append(item)
            self._bytes += grown
            within_budget = self.budget.add_reply_bytes(grown)
            if self._bytes > self.max_bytes or not within_budget:
                self._overflow(item)
                return False
            self._cond.notify_all()
            return True

    def _overflow(self, item: _Item) -> None:
        dropped = self._bytes
        self._clear()
        busy = _Item(
            Error(
                message=f"reply dropped: {dropped} bytes of it were waiting to be read",
                code="busy",
                hint=BUSY_HINT,
            ),
            True,
            item.request_id,
            item.reply_format,
        )
        busy.size = len(busy.encode())
        self._items.append(busy)
        self._bytes = busy.size
        self.budget.add_reply_bytes(self._bytes)
        self.overflowed = True
        self._closed = True
        self._cond.notify_all()

    def get(self) -> _Item | None:
        """The next item, waiting for one; None once closed and drained."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            item = self._items.popleft()
            self._bytes -= item.size
            self.budget.add_reply_bytes(-item.size)
            self._cond.notify_all()  # a paused reader may go on
        item.encode()  # outside the lock: a merged token may be megabytes
        return item

    def wait_for_room(self, limit: int) -> None:
        """Block while more than `limit` bytes are unsent here (or the budget is over)."""
        with self._cond:
            while not self._closed and (self._bytes > limit or self.budget.replies_over()):
                # The budget is shared, so its decrease may come from another connection.
                self._cond.wait(0.1)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> None:
        with self._cond:
            self._clear()
            self._closed = True
            self._cond.notify_all()

    def _clear(self) -> None:
        self.budget.add_reply_bytes(-self._bytes)
        self._items.clear()
        self._bytes = 0


class Connection:
    """Serves one accepted socket until the client leaves or the daemon stops."""

    def __init__(
        self,
        sock: socket.socket,
        dispatch: Callable[[Connection, Request], None],
        number: int,
        budget: Budget | None = None,
    ) -> None:
        self.sock = sock
        self.number = number
        self._dispatch = dispatch
        self.budget = budget or Budget()
        self.outbox = Outbox(budget=self.budget)
        # Requests waiting for the processor: (request, line size, counted in the budget).
        self._requests: collections.deque[tuple[Request, int, bool]] = collections.deque()
        self._requests_cond = threading.Condition()
        self._queued_bytes = 0
        self._processing_ended = False
        self._cancel_lock = threading.Lock()
        self._cancel: threading.Event | None = None  # the running generation's cancel flag
        self.gone = threading.Event()  # the client disconnected (or the daemon is stopping)
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the three threads; raises RuntimeError (socket closed) if threads cannot start."""
        try:
            for name, target in (
                ("writer", self._write_loop),
                ("proc", self._process_loop),
                ("reader", self._read_loop),
            ):
                thread = threading.Thread(
                    target=target, name=f"conn{self.number}-{name}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        except RuntimeError:
            self.stop()  # the threads that did start see the client gone and end
            if not self._threads:
                self.sock.close()
            raise

    def stop(self) -> None:
        """Cancel whatever runs and disconnect (daemon shutdown)."""
        self._client_gone()
        self.outbox.close()
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
        with self._requests_cond:
            self._requests_cond.notify_all()

    def _read_loop(self) -> None:
        buffer = b""
        discarding = False  # inside an oversized line: drop bytes until its newline
        try:
            while not self.gone.is_set():
                # Backpressure: a client that does not read its replies is not read either.
                self.outbox.wait_for_room(PAUSE_READING_BYTES)
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
        except Exception:  # never die without a word: the client sees a clean close
            log.exception("connection %d: reader failed", self.number)
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
        size = len(line)
        # Control commands are cheap and must get through an overloaded daemon (status to see
        # why, shutdown to stop it): only this connection's own bound applies to them.
        counted = request.task is not None or request.cmd == "load"
        with self._requests_cond:
            if self._processing_ended:
                return  # the client is gone; nothing will run or be read any more
            full = None
            if (
                len(self._requests) >= MAX_QUEUED_REQUESTS
                or self._queued_bytes + size > MAX_QUEUED_REQUEST_BYTES
            ):
                full = f"{MAX_QUEUED_REQUESTS} requests or {MAX_QUEUED_REQUEST_BYTES} bytes "
                full += "queued on this connection"
            elif counted and not self.budget.take_request(size):
                full = f"{self.budget.max_requests} requests queued by all clients"
            if full is None:
                self._requests.append((request, size, counted))
                self._queued_bytes += size
                self._requests_cond.notify()
        if full is not None:
            busy = BadRequest(
                f"the daemon is full ({full}); this request was not run",
                "busy",
                hint=BUSY_HINT,
                request_id=request.id,
            )
            busy.reply_format = request.reply_format
            self._reject(busy)

    def _reject(self, exc: BadRequest) -> None:
        self.outbox.put(_Item(exc.to_event(), True, exc.request_id, exc.reply_format))

    def _next_request(self) -> Request | None:
        with self._requests_cond:
            while not self._requests and not self.gone.is_set():
                self._requests_cond.wait()
            if self.gone.is_set():
                return None
            request, size, counted = self._requests.popleft()
            self._queued_bytes -= size
        if counted:
            self.budget.give_request(size)
        return request

    def _process_loop(self) -> None:
        try:
            while (request := self._next_request()) is not None:
                self._dispatch(self, request)
        finally:
            with self._requests_cond:  # the client is gone: give back what it had queued
                # ...and take no more: the reader may still be going through its last chunk.
                self._processing_ended = True
                for _, size, counted in self._requests:
                    if counted:
                        self.budget.give_request(size)
                self._requests.clear()
                self._queued_bytes = 0
            self.outbox.close()

    def _write_loop(self) -> None:
        try:
            while True:
                item = self.outbox.get()
                if item is None:
                    break
                try:
                    self.sock.sendall(item.encode())
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
