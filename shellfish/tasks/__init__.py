"""Tasks: turn a TaskRequest into a prompt for a model, run it, stream events.

Used in-process by the CLI and inside the daemon, so both give the same answers. Suggest and
fix go through `shellfish.suggest` (retrieval, candidates, checks, ranking) with the prompt of
`suggest.prompts`; the rest build a prompt in `tasks.prompts` and stream the runner's
events.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from shellfish.errors import UsageError
from shellfish.events import Done, Event, Status
from shellfish.request import TaskRequest

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.paths import Paths
    from shellfish.store.pool import ModelPool


def resolve_model_name(request: TaskRequest, settings: Settings, paths: Paths) -> str:
    """The model that serves this request: the one asked for, else routed by task."""
    from shellfish.store.routing import pick_model
    from shellfish.store.store import Store

    store = Store(paths)
    if request.model:
        return store.resolve(request.model).name
    task = "suggest" if request.task == "fix" else request.task
    task = "ask" if task == "chat" else task
    return pick_model(task, settings, store)


def run_task(
    request: TaskRequest,
    pool: ModelPool,
    settings: Settings,
    paths: Paths,
    *,
    cancel: threading.Event | None = None,
) -> Iterator[Event]:
    """Stream the events answering `request` with a local model from `pool`."""
    if not request.text.strip() and request.task != "chat":
        raise UsageError("the request is empty", hint="say what you want in words")
    from shellfish.shell.context import sanitize_context

    # Contexts from the zsh fast path had only the shell's own redaction: apply the reference one.
    request.context = sanitize_context(request.context)
    name = resolve_model_name(request, settings, paths)
    if not pool.is_loaded(name):
        yield Status(f"loading {name}", {"model": name})
    runner = pool.get(name)
    if request.task in ("suggest", "fix"):
        from shellfish.suggest import run_suggest

        # One turn for the whole suggestion (its answer and a rewrite of a retrieved winner)
        with pool.hold(name, cancel) as turn:
            events = run_suggest(request, runner, settings=settings, paths=paths, cancel=cancel)
            yield from _with_queue_ms(events, turn.queue_ms)
        return
    from shellfish.tasks.prompts import build_prompt

    prompt = build_prompt(request, runner.info.template, getattr(runner, "tokenizer", None))
    config = runner.info.defaults.merged(**request.generation)
    config.validate()
    if request.task == "translate":
        from shellfish.tasks.translate import run_translate

        with pool.hold(name, cancel) as turn:  # its retries keep the turn too
            events = run_translate(request, runner, prompt, config, cancel=cancel)
            yield from _with_queue_ms(events, turn.queue_ms)
        return
    yield from runner.generate(prompt, config, cancel=cancel)


def _with_queue_ms(events: Iterator[Event], queue_ms: float) -> Iterator[Event]:
    """`events`, the final Done reporting the wait for the model's turn (`queue_ms`)."""
    for event in events:
        if isinstance(event, Done):
            waited = queue_ms + float(event.extra.get("queue_ms") or 0.0)
            event = dataclasses.replace(event, extra={**event.extra, "queue_ms": waited})
        yield event
