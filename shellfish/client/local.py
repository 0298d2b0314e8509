"""In-process generation: the engine in this interpreter, no daemon."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from shellfish.events import Event

if TYPE_CHECKING:
    from shellfish.environment import Environment
    from shellfish.store.pool import ModelPool


def get_pool(env: Environment) -> ModelPool:
    """One pool per Environment, so a REPL keeps its model warm between questions.

    Kept on the Environment itself: a table keyed by id(env) would hand a new Environment
    the pool (and paths) of a dead one that happened to have the same id.
    """
    from shellfish.store.pool import ModelPool

    pool: ModelPool | None = env.__dict__.get("_model_pool")
    if pool is None:
        pool = env.__dict__["_model_pool"] = ModelPool(env.paths, env.settings)
    return pool


def local_stream(
    request: object, env: Environment, *, cancel: threading.Event | None = None
) -> Iterator[Event]:
    from shellfish.request import TaskRequest
    from shellfish.tasks import run_task

    assert isinstance(request, TaskRequest)
    yield from run_task(request, get_pool(env), env.settings, env.paths, cancel=cancel)
