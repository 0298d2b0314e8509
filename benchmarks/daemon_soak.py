"""Daemon soak (not a test): a mix of clients for a while; RSS, fds and threads must stay flat.

    .venv/bin/python benchmarks/daemon_soak.py                  # ~2 minutes, then stops
    .venv/bin/python benchmarks/daemon_soak.py --seconds 30 --workers 4

A real daemon process on a Unix socket in a temporary SHELLFISH_HOME, serving the `EchoRunner`
test models (tests/daemon_doubles.py; nothing leaves the machine). `--workers` threads each
loop over a random mix until the time is up:

- suggest / prompt: a whole answer through DaemonClient
- cancel: a generation cancelled after its first tokens
- disconnect: a generation whose client hangs up after the first token
- garbage: malformed lines, then a ping on the same connection
- flood: requests written without reading the replies, then a hang-up

The daemon's RSS, open fds and threads are sampled before (after a warm-up round of every
action), every 10 s, and after (once its connections have drained), with the requests the
daemon still counts as queued (0 when nothing leaked). Exit status 1 when fds or threads grew,
RSS grew by more than `--rss-slack-mb`, requests stayed counted, or an action failed.
"""

from __future__ import annotations

import argparse
import collections
import random
import socket
import sys
import threading
import time
from typing import Any


class Soak:
    def __init__(self, paths: Any, seed: int) -> None:
        from shellfish.client.daemon import DaemonClient

        self.paths = paths
        self.client = DaemonClient(paths)
        self.counts: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.random = random.Random(seed)

    def raw(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(self.paths.socket))
        return sock

    def generate_line(self, request_id: str, words: int = 20) -> bytes:
        from shellfish.daemon import protocol

        text = " ".join(f"word{i}" for i in range(words))
        return protocol.make_request(
            "generate",
            request_id=request_id,
            request={"task": "prompt", "text": text, "model": "echo2"},
        )

    # -- actions ------------------------------------------------------------------------------

    def suggest(self) -> None:
        from shellfish.request import TaskRequest

        list(self.client.stream(TaskRequest("suggest", "list the files here", model="echo")))

    def prompt(self) -> None:
        from shellfish.request import TaskRequest

        list(self.client.stream(TaskRequest("prompt", "one two three four", model="echo2")))

    def cancel(self) -> None:
        from shellfish.daemon import protocol

        with self.raw() as sock:
            sock.sendall(self.generate_line("c"))
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(protocol.make_request("cancel", request_id="c"))
            while b'"final":true' not in (line := reader.readline()):
                if not line:
                    raise RuntimeError("closed before the final reply of a cancelled stream")

    def disconnect(self) -> None:
        with self.raw() as sock:
            sock.sendall(self.generate_line("d"))
            sock.recv(64)

    def garbage(self) -> None:
        from shellfish.daemon import protocol

        with self.raw() as sock:
            sock.sendall(b"{not json\n[" + b"[" * 5000 + b"\n" + b'{"v": 1}\n')
            sock.sendall(protocol.make_request("ping", request_id="after"))
            reader = sock.makefile("rb")
            while b'"id":"after"' not in (line := reader.readline()):
                if not line:
                    raise RuntimeError("closed before the ping after garbage")

    def flood(self) -> None:
        with self.raw() as sock:
            sock.settimeout(2)
            try:
                for i in range(40):
                    sock.sendall(self.generate_line(f"f{i}", words=200))
            except OSError:  # the daemon stopped reading us: that is the point
                pass

    ACTIONS = ("suggest", "prompt", "cancel", "disconnect", "garbage", "flood")

    def run(self, action: str) -> None:
        try:
            getattr(self, action)()
        except Exception as exc:  # counted and shown, the soak goes on
            with self.lock:
                self.failures.append(f"{action}: {exc!r}")
        with self.lock:
            self.counts[action] += 1

    def worker(self, deadline: float, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            self.run(rng.choice(self.ACTIONS))


def sample(pid: int) -> dict[str, float]:
    import psutil

    process = psutil.Process(pid)
    return {
        "rss_mb": process.memory_info().rss / 2**20,
        "fds": process.num_fds(),
        "threads": process.num_threads(),
    }


def show(label: str, values: dict[str, float]) -> None:
    print(
        f"{label:<10} rss {values['rss_mb']:7.1f} MB   fds {values['fds']:4.0f}   "
        f"threads {values['threads']:4.0f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss-slack-mb", type=float, default=20.0)
    args = parser.parse_args()

    from echo_daemon import echo_daemon

    with echo_daemon(step_s=0.005) as (paths, pid):
        soak = Soak(paths, args.seed)
        for action in Soak.ACTIONS:  # warm-up: models loaded, imports done, buffers grown
            soak.run(action)
        settle(soak)
        before = sample(pid)
        show("before", before)
        deadline = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=soak.worker, args=(deadline, args.seed + n), daemon=True)
            for n in range(args.workers)
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(min(10.0, max(0.1, deadline - time.monotonic())))
            if time.monotonic() < deadline:
                show(f"{args.seconds - (deadline - time.monotonic()):.0f} s", sample(pid))
        for thread in threads:
            thread.join(60)
        settle(soak)
        after = sample(pid)
        show("after", after)
        queued = soak.client.status()["queued_requests"]  # the daemon-wide budget given back?
        total = sum(soak.counts.values())
        print(
            f"{total} actions in {args.seconds:.0f} s with {args.workers} workers: "
            + ", ".join(f"{k} {v}" for k, v in sorted(soak.counts.items()))
        )
        if soak.failures:
            print(f"{len(soak.failures)} failed actions, e.g.: " + "; ".join(soak.failures[:5]))
        grew = {k: after[k] - before[k] for k in before}
        flat = grew["fds"] <= 0 and grew["threads"] <= 0 and grew["rss_mb"] <= args.rss_slack_mb
        flat = flat and queued == 0
        print(
            f"growth: rss {grew['rss_mb']:+.1f} MB, fds {grew['fds']:+.0f}, "
            f"threads {grew['threads']:+.0f}; requests still counted as queued: {queued} "
            f"-> {'flat' if flat else 'NOT FLAT'}"
        )
    return 0 if flat and not soak.failures else 1


def settle(soak: Soak, timeout: float = 30.0) -> None:
    """Wait until the daemon serves only the status request that asks (all others drained)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = soak.client.status()
        if status["connections"] <= 1 and status["active"] == 0:
            time.sleep(0.5)  # let the finished connections' threads exit
            return
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
