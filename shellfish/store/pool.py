"""The model pool: loads each model once, hands out runners, unloads idle ones, keeps a budget.

Both the daemon and the in-process CLI path get runners from a `ModelPool`. A runner handed out
by the pool is a thin proxy: its `generate` runs one generation per model at a time (runners
keep per-model state such as the prefix cache) and records use for the idle and LRU policies.
A proxy stays valid after its model was unloaded or evicted: the next `generate` loads it again.

Generations waiting for a busy model are served first come, first served (`_Turnstile`), so a
request waits at most for the ones queued before it: position x service time. The time spent
waiting is reported apart from model time: `queue_ms` in the Done's `extra` of each generation,
and `queue_waited_ms()` for callers that run several generations for one request. Such a
request takes its turn once for all of them (`ModelPool.hold`): a suggestion that rewrites a
retrieved winner, or a translation that retries, does not go to the back of the queue between
its generations.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.errors import Cancelled, ModelError, ModelNotFound
from shellfish.events import Done

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.engine.base import GenerationConfig, ModelInfo, Runner
    from shellfish.events import Event
    from shellfish.paths import Paths

#: loader(name) -> (runner, warnings). Raises ModelNotFound / ModelError.
Loader = Callable[[str], "tuple[Runner, list[str]]"]

_MB = 1024 * 1024

#: How often a waiting generation looks at its cancel flag (a release wakes it at once).
CANCEL_CHECK_S = 0.05

# Milliseconds this context (a daemon connection's thread, the CLI) has waited for busy models.
_waited_ms: contextvars.ContextVar[float] = contextvars.ContextVar("queue_waited_ms", default=0.0)
# The models whose turn this context holds through `ModelPool.hold` (name -> its entry).
_holding: contextvars.ContextVar[dict[str, _Entry] | None] = contextvars.ContextVar(
    "pool_holding", default=None
)


def queue_waited_ms() -> float:
    """Total time this thread's context has waited for busy models so far (monotonic).

    A request that runs several generations reads it before and after to get its own wait.
    """
    return _waited_ms.get()


class _Turnstile:
    """A lock handed to waiters in arrival order (a ticket queue under one condition).

    `threading.Lock` makes no promise about which waiter gets it next: under load a request could
    wait behind any number of later ones. Here `release` wakes everyone and only the oldest
    ticket proceeds.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._tickets: collections.deque[object] = collections.deque()
        self._held = False

    def acquire(self, cancel: threading.Event | None = None) -> None:
        """Wait for our turn; Cancelled (and out of the queue) if `cancel` is set meanwhile."""
        ticket = object()
        with self._cond:
            self._tickets.append(ticket)
            try:
                while self._held or self._tickets[0] is not ticket:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled while waiting for the model")
                    # The timeout only serves the cancel check; turns are handed out by notify.
                    self._cond.wait(CANCEL_CHECK_S if cancel is not None else None)
            except BaseException:
                self._tickets.remove(ticket)
                self._cond.notify_all()  # the next ticket may be at the head now
                raise
            self._tickets.popleft()
            self._held = True

    def try_acquire(self) -> bool:
        """Take it only if nobody holds it or waits for it."""
        with self._cond:
            if self._held or self._tickets:
                return False
            self._held = True
            return True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def locked(self) -> bool:
        """Held or waited for: the model is in use."""
        with self._cond:
            return self._held or bool(self._tickets)

    def waiting(self) -> int:
        with self._cond:
            return len(self._tickets)


def resolve_model_path(paths: Paths, name: str) -> Path:
    """Where model `name` is installed; ModelNotFound when it is not."""
    try:
        from shellfish.store.store import Store
    except ModuleNotFoundError as exc:  # the store is optional while it is being written
        if not (exc.name or "").startswith("shellfish.store"):
            raise
    else:
        return Path(Store(paths).resolve(name).path)
    candidate = paths.models / name
    if candidate.is_dir():
        return candidate
    raise ModelNotFound(
        f"model '{name}' is not installed", hint=f"run `shellfish models pull {name}`"
    )


def default_loader(paths: Paths, settings: Settings, *, long_lived: bool = False) -> Loader:
    """Resolve installed models through the store and load them with the ONNX engine.

    `long_lived` (the daemon, serve, eval) loads a model's prefill graph under the default
    `engine.prefill_graph = "warm"`. Chat models keep their system turns' KV cache in the user
    cache dir (`prefixes/`), so a one-shot run starts where the last one left off.
    """
    choice = settings.engine.prefill_graph
    prefill_graph = choice == "always" or (choice == "warm" and long_lived)

    def load(name: str) -> tuple[Runner, list[str]]:
        path = resolve_model_path(paths, name)
        from shellfish.engine.loader import load_model

        runner, warnings = load_model(
            path,
            name=name,
            provider=settings.engine.provider,
            threads=settings.engine.threads,
            max_context=settings.engine.max_context,
            prefill_graph=prefill_graph,
            prefix_dir=paths.cache / "prefixes",
        )
        return runner, list(warnings)

    return load


def process_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


@dataclass
class _Entry:
    name: str
    runner: Runner
    warnings: list[str]
    loaded_at: float
    last_used: float
    load_ms: float
    rss_bytes: int
    requests: int = 0
    lock: _Turnstile = field(default_factory=_Turnstile)  # held while generating
    unloaded: bool = False  # removed from the pool; close the runner when the lock frees
    closed: bool = False  # the runner was closed (by whoever held the lock last)

    def close_runner(self) -> None:
        """Close the runner once; call with `lock` held."""
        if not self.closed:
            self.closed = True
            _close(self.runner)


class ModelPool:
    """Thread-safe cache of loaded runners with idle unload and an LRU memory budget."""

    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        *,
        loader: Loader | None = None,
        memory_fn: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
        long_lived: bool = False,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self._loader = loader or default_loader(paths, settings, long_lived=long_lived)
        self._memory_fn = memory_fn or process_rss
        self._clock = clock
        self._lock = threading.Lock()  # guards _entries and _loading
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._budget: int | None = None
        self.evicted: list[str] = []  # names evicted for the memory budget, oldest first

    # -- public API -----------------------------------------------------------------------------

    def get(self, name: str) -> PooledRunner:
        """A runner for `name`, loading the model on first use (once, even under contention)."""
        entry = self._ensure(name)
        return PooledRunner(self, name, entry.runner.info)

    def warnings(self, name: str) -> list[str]:
        with self._lock:
            entry = self._entries.get(name)
        return list(entry.warnings) if entry else []

    def load_ms(self, name: str) -> float:
        with self._lock:
            entry = self._entries.get(name)
        return entry.load_ms if entry else 0.0

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._entries

    def unload(self, name: str) -> bool:
        """Drop `name` from the pool; its runner closes now, or when its generation ends."""
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is None:
            return False
        self._retire(entry)
        return True

    def unload_idle(self, max_idle_s: float) -> list[str]:
        """Unload models not used for `max_idle_s` seconds (never one that is generating)."""
        now = self._clock()
        out = []
        with self._lock:
            idle = [
                e
                for e in self._entries.values()
                if now - e.last_used >= max_idle_s and not e.lock.locked()
            ]
            for entry in idle:
                del self._entries[entry.name]
        for entry in idle:
            self._retire(entry)
            out.append(entry.name)
        return out

    def loaded(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries.values())
        return [
            {
                "name": e.name,
                "family": getattr(e.runner.info, "family", ""),
                "loaded_at": e.loaded_at,
                "last_used": e.last_used,
                "requests": e.requests,
                "rss_mb": round(e.rss_bytes / _MB, 1),
                "load_ms": round(e.load_ms, 1),
                "busy": e.lock.locked(),
                "waiting": e.lock.waiting(),
                "warnings": list(e.warnings),
            }
            for e in sorted(entries, key=lambda e: e.loaded_at)
        ]

    @property
    def memory_budget_bytes(self) -> int:
        if self._budget is None:
            configured = self.settings.daemon.memory_budget_mb
            if configured > 0:
                self._budget = configured * _MB
            else:
                import psutil

                self._budget = int(psutil.virtual_memory().available // 2)
        return self._budget

    def close(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            self._retire(entry)

    # -- internals --------------------------------------------------------------------------------

    def _ensure(self, name: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                return entry
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one loader per name; other names load in parallel
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None:
                    return entry
            before = self._memory_fn()
            started = time.perf_counter()
            try:
                runner, warnings = self._loader(name)
            except (ModelError, OSError) as exc:
                if isinstance(exc, ModelError):
                    raise
                raise ModelError(
                    f"could not load model '{name}': {exc}",
                    hint=f"check the files, or reinstall: `shellfish models pull {name}`",
                ) from exc
            load_ms = (time.perf_counter() - started) * 1000.0
            now = self._clock()
            entry = _Entry(
                name=name,
                runner=runner,
                warnings=list(warnings),
                loaded_at=now,
                last_used=now,
                load_ms=load_ms,
                rss_bytes=max(0, self._memory_fn() - before),
            )
            with self._lock:
                self._entries[name] = entry
                self._loading.pop(name, None)
        self._enforce_budget(keep=name)
        return entry

    def _enforce_budget(self, keep: str) -> None:
        """Evict least recently used idle models until the process fits the budget."""
        budget = self.memory_budget_bytes
        while self._memory_fn() > budget:
            with self._lock:
                candidates = sorted(
                    (e for e in self._entries.values() if e.name != keep and not e.lock.locked()),
                    key=lambda e: e.last_used,
                )
                if not candidates:
                    return
                victim = candidates[0]
                del self._entries[victim.name]
            self._retire(victim)
            self.evicted.append(victim.name)

    def _retire(self, entry: _Entry) -> None:
        entry.unloaded = True
        if entry.lock.try_acquire():
            try:
                entry.close_runner()
            finally:
                entry.lock.release()
        # else: the generation holding the lock, or the next waiter, closes the runner

    @contextlib.contextmanager
    def hold(self, name: str, cancel: threading.Event | None = None) -> Iterator[Turn]:
        """Take `name`'s turn once for every generation run inside the block (same context).

        Waits in the same FIFO queue as single generations; `Turn.queue_ms` is how long.
        """
        held = _holding.get() or {}
        if name in held:
            yield Turn(0.0)
            return
        entry, queue_ms = self._acquire(name, cancel)
        token = _holding.set({**held, name: entry})
        try:
            yield Turn(queue_ms)
        finally:
            _holding.reset(token)
            self._release(entry)

    def _generate(
        self, name: str, prompt: str, config: GenerationConfig, cancel: threading.Event | None
    ) -> Iterator[Event]:
        entry = (_holding.get() or {}).get(name)
        if entry is not None:  # inside hold(): the turn is ours already
            yield from self._run(entry, prompt, config, cancel, 0.0)
            return
        entry, queue_ms = self._acquire(name, cancel)
        try:
            yield from self._run(entry, prompt, config, cancel, queue_ms)
        finally:
            self._release(entry)

    def _acquire(self, name: str, cancel: threading.Event | None) -> tuple[_Entry, float]:
        """Wait for `name`'s turn (FIFO); returns its entry, loaded, and the wait in ms."""
        queue_ms = 0.0  # waiting for the model only: a load on the way is not queueing
        while True:
            entry = self._ensure(name)
            waiting = time.perf_counter()
            try:
                entry.lock.acquire(cancel)  # one generation per model at a time, in FIFO order
            except Cancelled:
                if entry.unloaded:  # we may have been what kept _retire from closing it
                    self._retire(entry)
                raise
            finally:
                waited = (time.perf_counter() - waiting) * 1000
                queue_ms += waited
                _waited_ms.set(_waited_ms.get() + waited)
            if not entry.unloaded:
                break
            # Unloaded while we waited: nobody may have been able to close it (a waiter kept
            # _retire from taking the lock), so whoever gets the turn does; then load it again.
            entry.close_runner()
            entry.lock.release()
        return entry, queue_ms

    def _run(
        self,
        entry: _Entry,
        prompt: str,
        config: GenerationConfig,
        cancel: threading.Event | None,
        queue_ms: float,
    ) -> Iterator[Event]:
        entry.requests += 1
        entry.last_used = self._clock()
        for event in entry.runner.generate(prompt, config, cancel=cancel):
            if isinstance(event, Done):
                event = dataclasses.replace(event, extra={**event.extra, "queue_ms": queue_ms})
            yield event
        entry.last_used = self._clock()

    def _release(self, entry: _Entry) -> None:
        entry.last_used = self._clock()
        if entry.unloaded:
            entry.close_runner()
        entry.lock.release()


@dataclass(frozen=True)
class Turn:
    """A model's turn held by `ModelPool.hold`: how long it was waited for."""

    queue_ms: float


class PooledRunner:
    """The Runner the pool hands out (see the module docstring)."""

    def __init__(self, pool: ModelPool, name: str, info: ModelInfo) -> None:
        self._pool = pool
        self.name = name
        self.info = info

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        return self._pool._generate(self.name, prompt, config, cancel)

    def count_tokens(self, text: str) -> int:
        return self._pool._ensure(self.name).runner.count_tokens(text)

    @property
    def warnings(self) -> list[str]:
        return self._pool.warnings(self.name)

    def __getattr__(self, attr: str) -> Any:
        # Runner-specific extras (e.g. `tokenizer` for chat templates) come from the model.
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._pool._ensure(self.name).runner, attr)

    def close(self) -> None:
        """Nothing to do: the pool owns the model's lifetime."""


def _close(runner: Runner) -> None:
    close = getattr(runner, "close", None)
    if callable(close):
        close()
