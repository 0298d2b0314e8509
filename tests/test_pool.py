"""ModelPool: load once, hand out runners, idle unload, LRU eviction under a memory budget."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from daemon_doubles import EchoRunner

from shellfish.config import DaemonSettings, Settings
from shellfish.engine.base import GenerationConfig
from shellfish.errors import Cancelled, ModelError, ModelNotFound
from shellfish.events import Done, Token
from shellfish.paths import get_paths
from shellfish.store.pool import ModelPool

MB = 1024 * 1024


class Loads:
    """A loader recording calls; each model 'weighs' `size` bytes in the fake memory meter."""

    def __init__(self, delay: float = 0.0, size: int = 0) -> None:
        self.calls: list[str] = []
        self.runners: dict[str, EchoRunner] = {}
        self.delay = delay
        self.size = size
        self.lock = threading.Lock()

    def __call__(self, name: str) -> tuple[EchoRunner, list[str]]:
        if name == "missing":
            raise ModelNotFound("model 'missing' is not installed")
        if name == "broken":
            raise OSError("truncated protobuf")
        time.sleep(self.delay)
        with self.lock:
            self.calls.append(name)
        runner = EchoRunner(name, delay=0.01)
        self.runners[name] = runner
        return runner, [f"{name} warning"]

    def memory(self) -> int:
        return 100 * MB + self.size * sum(not r.closed for r in self.runners.values())


def make_pool(tmp_path: Path, loads: Loads, budget_mb: int = 0, **kw: object) -> ModelPool:
    settings = Settings(daemon=DaemonSettings(memory_budget_mb=budget_mb))
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    return ModelPool(paths, settings, loader=loads, memory_fn=loads.memory, **kw)  # type: ignore[arg-type]


def run(runner: object, prompt: str, **kw: object) -> list[object]:
    return list(runner.generate(prompt, GenerationConfig(), **kw))  # type: ignore[attr-defined]


def test_loads_once_under_contention(tmp_path: Path) -> None:
    loads = Loads(delay=0.2)
    pool = make_pool(tmp_path, loads)
    runners = []
    threads = [threading.Thread(target=lambda: runners.append(pool.get("echo"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads.calls == ["echo"] and len(runners) == 8
    assert pool.warnings("echo") == ["echo warning"]


def test_runner_streams_and_records_use(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, Loads())
    runner = pool.get("echo")
    events = run(runner, "a b c")
    assert "".join(e.text for e in events if isinstance(e, Token)) == "a b c"
    assert isinstance(events[-1], Done)
    (info,) = pool.loaded()
    assert info["name"] == "echo" and info["family"] == "causal" and info["requests"] == 1
    assert info["last_used"] >= info["loaded_at"] and info["busy"] is False
    assert runner.count_tokens("x y") == 2
    assert runner.tokens is None  # runner-specific attributes pass through the proxy


def test_unload_closes_and_proxy_reloads(tmp_path: Path) -> None:
    loads = Loads()
    pool = make_pool(tmp_path, loads)
    runner = pool.get("echo")
    first = loads.runners["echo"]
    assert pool.unload("echo") and first.closed
    assert not pool.unload("echo")
    assert pool.loaded() == []
    run(runner, "again")  # the old proxy loads the model again
    assert loads.calls == ["echo", "echo"] and not loads.runners["echo"].closed


def test_unload_during_generation_closes_after_it(tmp_path: Path) -> None:
    loads = Loads()
    pool = make_pool(tmp_path, loads)
    stream = pool.get("echo").generate("a b c d", GenerationConfig())
    next(stream)
    assert pool.unload("echo")
    assert not loads.runners["echo"].closed  # still generating
    rest = list(stream)
    assert isinstance(rest[-1], Done) and loads.runners["echo"].closed


def test_unload_idle_uses_last_use(tmp_path: Path) -> None:
    now = [1000.0]
    pool = make_pool(tmp_path, Loads(), clock=lambda: now[0])
    pool.get("echo")
    pool.get("echo2")
    now[0] += 50
    run(pool.get("echo2"), "x")
    now[0] += 20
    assert pool.unload_idle(60) == ["echo"]
    assert [m["name"] for m in pool.loaded()] == ["echo2"]
    assert pool.unload_idle(60) == []


def test_budget_evicts_least_recently_used(tmp_path: Path) -> None:
    loads = Loads(size=60 * MB)  # base 100 MB + 60 MB per loaded model
    pool = make_pool(tmp_path, loads, budget_mb=230)  # room for two models, not three
    pool.get("echo")
    pool.get("echo2")
    run(pool.get("echo"), "touch")  # echo is now more recent than echo2
    pool.get("echo3")
    assert pool.evicted == ["echo2"]
    assert sorted(m["name"] for m in pool.loaded()) == ["echo", "echo3"]
    assert loads.runners["echo2"].closed


def test_budget_never_evicts_a_busy_model(tmp_path: Path) -> None:
    loads = Loads(size=200 * MB)
    pool = make_pool(tmp_path, loads, budget_mb=250)
    stream = pool.get("echo").generate("a b c", GenerationConfig())
    next(stream)  # echo is generating
    pool.get("echo2")
    assert pool.evicted == [] and pool.is_loaded("echo")
    list(stream)


def test_budget_with_real_memory(tmp_path: Path) -> None:
    """psutil's RSS of this process: models holding 80 MB each, a budget for about two."""
    import psutil

    class Heavy(EchoRunner):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.ballast: bytearray | None = bytearray(os_random(80 * MB))

        def close(self) -> None:
            super().close()
            self.ballast = None

    base = psutil.Process().memory_info().rss
    settings = Settings(daemon=DaemonSettings(memory_budget_mb=int(base / MB) + 200))
    pool = ModelPool(
        get_paths({"SHELLFISH_HOME": str(tmp_path)}),
        settings,
        loader=lambda name: (Heavy(name), []),
    )
    for name in ("echo", "echo2", "echo3", "echo4"):
        pool.get(name)
    assert len(pool.evicted) >= 1 and pool.evicted[0] == "echo"
    assert pool.is_loaded("echo4")
    assert any(m["rss_mb"] >= 70 for m in pool.loaded())
    pool.close()


def os_random(n: int) -> bytes:
    # Pages must really be touched to count in RSS; zero pages might be shared.
    return (b"\x5a" * 4096) * (n // 4096)


def test_load_errors_are_clear(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, Loads())
    with pytest.raises(ModelNotFound):
        pool.get("missing")
    with pytest.raises(ModelError, match=r"could not load model 'broken'.*truncated"):
        pool.get("broken")
    assert pool.loaded() == []


def test_default_loader_reports_missing_models(tmp_path: Path) -> None:
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    pool = ModelPool(paths, Settings())
    with pytest.raises(ModelNotFound, match=r"shellfish models pull qwen2\.5-coder-0\.5b-instruct"):
        pool.get("qwen2.5-coder-0.5b-instruct")


def test_one_generation_per_model_and_cancel_while_waiting(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, Loads())
    runner = pool.get("echo")
    first = runner.generate("a b c d e f", GenerationConfig())
    next(first)  # holds the model
    cancel = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            run(runner, "x y", cancel=cancel)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()  # waiting for the model
    cancel.set()
    thread.join(2)
    assert not thread.is_alive() and isinstance(errors[0], Cancelled)
    list(first)
    assert run(runner, "x y")[-1].text == "x y"  # type: ignore[union-attr]


def test_waiting_generations_are_served_in_arrival_order(tmp_path: Path) -> None:
    """FIFO per model: with the model busy, N waiters get it in the order they asked for it."""
    pool = make_pool(tmp_path, Loads())
    runner = pool.get("echo")
    first = runner.generate("hold " * 5, GenerationConfig())
    next(first)  # the model is busy
    order: list[int] = []
    threads = []
    for i in range(8):
        thread = threading.Thread(target=lambda i=i: order.append(int(run(runner, f"{i}")[0].text)))  # type: ignore[attr-defined]
        thread.start()
        threads.append(thread)
        # each waiter is queued before the next one arrives
        deadline = time.monotonic() + 5
        while pool.loaded()[0]["waiting"] < i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    list(first)
    for thread in threads:
        thread.join(10)
    assert order == list(range(8))


def test_queue_wait_is_reported_apart_from_model_time(tmp_path: Path) -> None:
    from shellfish.store.pool import queue_waited_ms

    pool = make_pool(tmp_path, Loads())
    runner = pool.get("echo")
    mine = queue_waited_ms()
    first = runner.generate("a b c", GenerationConfig())
    next(first)
    result: list[Done] = []
    waited: list[float] = []

    def second() -> None:
        before = queue_waited_ms()
        events = run(runner, "x")
        waited.append(queue_waited_ms() - before)
        result.append(events[-1])  # type: ignore[arg-type]

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    list(first)
    thread.join(5)
    done = result[0]
    assert done.extra["queue_ms"] >= 250  # waited for the first generation
    assert done.total_ms < 200  # the model's own time for one word (delay 0.01)
    assert abs(waited[0] - done.extra["queue_ms"]) < 1
    assert queue_waited_ms() - mine < 50  # counted per thread: the other thread's wait is not ours


def test_a_held_turn_keeps_later_requests_out_between_its_generations(tmp_path: Path) -> None:
    """A suggestion that runs two generations (its answer, then a rewrite) takes one turn: a
    request that arrives meanwhile runs after both, not between them (FIFO per request)."""
    pool = make_pool(tmp_path, Loads())
    runner = pool.get("echo")
    order: list[str] = []
    with pool.hold("echo") as turn:
        assert turn.queue_ms >= 0
        order.append(run(runner, "first")[0].text)  # type: ignore[attr-defined]
        later = threading.Thread(target=lambda: order.append(run(runner, "later")[0].text))  # type: ignore[attr-defined]
        later.start()
        deadline = time.monotonic() + 5
        while pool.loaded()[0]["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert pool.loaded()[0]["waiting"] == 1  # queued behind our turn
        order.append(run(runner, "second")[0].text)  # type: ignore[attr-defined]
    later.join(5)
    assert order == ["first", "second", "later"]


def test_run_task_holds_the_turn_for_a_whole_suggestion(tmp_path: Path) -> None:
    """run_task takes the model's turn once for suggest; its Done reports that wait."""
    from daemon_doubles import install_fake_models

    from shellfish.request import TaskRequest
    from shellfish.tasks import run_task

    install_fake_models(tmp_path)
    pool = make_pool(tmp_path, Loads())
    held: list[str] = []
    hold = pool.hold

    def spy(name: str, cancel: object = None):  # type: ignore[no-untyped-def]
        held.append(name)
        return hold(name, cancel)  # type: ignore[arg-type]

    pool.hold = spy  # type: ignore[method-assign]
    paths = get_paths({"SHELLFISH_HOME": str(tmp_path)})
    runner = pool.get("echo")
    busy = runner.generate("hold " * 3, GenerationConfig())
    next(busy)
    result: list[Done] = []

    def suggest() -> None:
        request = TaskRequest(task="suggest", text="list files", model="echo")
        events = list(run_task(request, pool, Settings(), paths))
        result.append(events[-1])  # type: ignore[arg-type]

    thread = threading.Thread(target=suggest)
    thread.start()
    time.sleep(0.3)
    list(busy)
    thread.join(10)
    assert held == ["echo"]
    assert isinstance(result[0], Done) and result[0].extra["queue_ms"] >= 250
