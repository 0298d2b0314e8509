"""Test doubles and helpers for the daemon, pool and serve tests (no tests in here).

`EchoRunner` is a deterministic stand-in for a model, honest for the *mechanics* under test
(framing, streaming, cancellation, concurrency, idle unload, LRU): it streams the words of its
prompt back one per decode step, sleeping `delay` seconds per step and checking the cancel flag
before every step, like the real runners. It logs how many steps ran after a cancel so tests
running it inside a real daemon process can check "stops within one decode step".
The daemon process gets it through `--loader daemon_doubles:loader_factory`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shellfish.engine.base import GenerationConfig, ModelInfo
from shellfish.errors import ModelNotFound
from shellfish.events import Done, Event, Token

log = logging.getLogger("shellfish.daemon")

ECHO_MODELS = ("echo", "echo2", "echo3")
MANIFEST = "shellfish-model.json"
TASKS = ["suggest", "explain", "ask", "translate", "prompt"]


class EchoRunner:
    def __init__(self, name: str, delay: float = 0.0, *, tokens: int | None = None) -> None:
        self.info = ModelInfo(
            name=name,
            family="causal",
            layout="test-double",
            path="",
            context_length=4096,
            template="plain",
            defaults=GenerationConfig(max_new_tokens=64),
        )
        self.delay = delay
        self.tokens = tokens  # emit this many tokens ("w0 w1 ...") instead of echoing
        self.closed = False
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        self.closed = True

    def generate(
        self, prompt: str, config: GenerationConfig, *, cancel: threading.Event | None = None
    ) -> Iterator[Event]:
        self.calls += 1
        started = time.perf_counter()
        words = [f"w{i}" for i in range(self.tokens)] if self.tokens else prompt.split()
        words = words[: config.max_new_tokens]
        out: list[str] = []
        finish = "stop"
        for i, word in enumerate(words):
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                log.info("echo-runner %s cancelled after %d steps", self.info.name, i)
                break
            if self.delay:
                time.sleep(self.delay)
            piece = word if i == 0 else " " + word
            out.append(piece)
            yield Token(piece)
        if finish == "stop" and len(words) == config.max_new_tokens and self.tokens:
            finish = "length"
        total = (time.perf_counter() - started) * 1000
        yield Done(
            texts=["".join(out)],
            model=self.info.name,
            prompt_tokens=len(prompt.split()),
            completion_tokens=len(out),
            total_ms=total,
            finish_reason=finish,
        )


def loader_factory(paths: Any, settings: Any) -> Any:
    """For the daemon process: EchoRunners; delay and length from the environment."""
    delay = float(os.environ.get("SHELLFISH_TEST_DELAY", "0"))
    tokens = int(os.environ.get("SHELLFISH_TEST_TOKENS", "0")) or None

    def load(name: str) -> tuple[EchoRunner, list[str]]:
        if name not in ECHO_MODELS:
            raise ModelNotFound(
                f"model '{name}' is not installed", hint=f"run `shellfish models pull {name}`"
            )
        return EchoRunner(name, delay, tokens=tokens), [f"{name} is a test double"]

    return load


def install_fake_models(home: Path, names: tuple[str, ...] = ECHO_MODELS) -> None:
    """Store entries (manifest only) so task routing finds the echo models by name."""
    for name in names:
        root = home / "data" / "models" / name
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(
            json.dumps(
                {
                    "name": name,
                    "family": "causal",
                    "layout": "test-double",
                    "tasks": TASKS,
                    "files": {},
                }
            ),
            encoding="utf-8",
        )
