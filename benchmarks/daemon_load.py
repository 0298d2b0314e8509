"""Daemon load benchmark (not a test): latency under 1, 4 and 16 concurrent clients.

    .venv/bin/python benchmarks/daemon_load.py                      # ~15 s
    .venv/bin/python benchmarks/daemon_load.py --clients 1 4 16 --requests 5 --step-s 0.02

A real daemon process on a Unix socket in a temporary SHELLFISH_HOME, serving the `EchoRunner`
test model (tests/daemon_doubles.py): each answer takes `--tokens` decode steps of
`--step-s` seconds, a stand-in for a model's service time (nothing leaves the machine). Every
client sends `--requests` requests one after another to the same model. One generation runs per
model at a time, so with N clients a request waits behind at most N - 1 others; served first
come, first served its latency is at most N x the service time (the "FIFO bound" column), which
the max should respect (plus the protocol's own overhead).

Prints per client count: p50 / p95 / max of the wall time per request, the model time
(Done.total_ms), the queue wait (Done.extra.queue_ms), and the bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_clients(paths: object, clients: int, requests: int, task: str) -> list[tuple[float, ...]]:
    """(wall_ms, model_ms, queue_ms) for every request of `clients` concurrent clients."""
    from shellfish.client.daemon import DaemonClient
    from shellfish.events import Done
    from shellfish.request import TaskRequest

    rows: list[tuple[float, ...]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        daemon = DaemonClient(paths)  # type: ignore[arg-type]
        start.wait()
        try:
            for i in range(requests):
                began = time.perf_counter()
                request = TaskRequest(task, f"client {number} request {i}", model="echo")
                done = list(daemon.stream(request))[-1]
                wall = (time.perf_counter() - began) * 1000
                assert isinstance(done, Done)
                with lock:
                    rows.append((wall, done.total_ms, float(done.extra.get("queue_ms", 0.0))))
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"a client failed: {errors[0]!r}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--tokens", type=int, default=5, help="decode steps per answer")
    parser.add_argument("--step-s", type=float, default=0.02, help="seconds per decode step")
    parser.add_argument("--task", default="prompt", choices=["prompt", "suggest", "explain"])
    args = parser.parse_args()

    from echo_daemon import echo_daemon

    header = (
        f"{'clients':>7} {'reqs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'model p50':>9} {'queue p50':>9} {'queue max':>9} {'FIFO bound':>10}  within"
    )
    with echo_daemon(args.step_s, args.tokens) as (paths, _):
        print(
            f"daemon on {paths.socket}; EchoRunner: {args.tokens} steps x "
            f"{args.step_s * 1000:g} ms; {args.requests} {args.task} requests per client"
        )
        run_clients(paths, 1, 1, args.task)  # warm-up: model loaded, the task's code imported
        print(header)
        for clients in args.clients:
            rows = run_clients(paths, clients, args.requests, args.task)
            walls = [r[0] for r in rows]
            service = statistics.median(r[1] for r in rows)
            queues = [r[2] for r in rows]
            # FIFO: at most clients - 1 requests ahead, each one service time, plus this one.
            bound = clients * service
            within = "yes" if max(walls) <= bound * 1.2 + 100 else "NO"
            print(
                f"{clients:>7} {len(rows):>5} {percentile(walls, 0.5):>8.0f} "
                f"{percentile(walls, 0.95):>8.0f} {max(walls):>8.0f} {service:>9.0f} "
                f"{percentile(queues, 0.5):>9.0f} {max(queues):>9.0f} {bound:>10.0f}  {within}"
            )
    print("within: max <= FIFO bound = clients x model p50 (+20 % and 100 ms for protocol, noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
