"""`shellfish setup`: install the default model and say how to enable the zsh widget.

After installing the model suggestions go to it answers one suggestion (thrown away), so the
system turn every suggestion opens with is on disk before the user's first request.

Idempotent: when the default model is installed and intact it changes nothing and returns
fast (no hashing, no network); it always says what it did.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shellfish.environment import Environment
    from shellfish.store.store import Store

ZSHRC_LINE = 'eval "$(shellfish init zsh)"'


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "setup", help="install the default model (idempotent) and print the .zshrc line"
    )
    parser.add_argument("--model", help="model to install (default: settings' models.default)")
    parser.add_argument("--force", action="store_true", help="reinstall the model")
    parser.set_defaults(func=cmd_setup)


def cmd_setup(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.cli.models import loader_validator, make_store, progress_bars
    from shellfish.store.install import built_as_described, pull

    store = make_store(env)
    name = args.model or env.settings.models.default
    desc = store.catalog.get(name)
    existing = store.get(desc.name)
    current = (
        existing is not None
        and not existing.missing_files()
        and bool(desc.sources)
        and built_as_described(existing.manifest, desc.sources[0])
    )
    installed = False
    if existing is not None and current and not args.force:
        env.info(f"model {desc.name}: already installed at {existing.path} (nothing to do)")
    else:
        env.info(f"model {desc.name}: installing into {store.root}")
        with progress_bars(env) as progress:
            model, _ = pull(
                store,
                desc.name,
                environ=env.environ,
                force=args.force,
                progress=progress,
                validator=loader_validator(),
            )
        env.info(f"model {model.name}: installed at {model.path}")
        installed = True
    _ensure_knowledge(env)
    if installed:
        _first_suggestion(env, store, desc.name)
    env.info("to enable the zsh widget, add this line to ~/.zshrc:")
    env.stdout.write(ZSHRC_LINE + "\n")
    return 0


def _first_suggestion(env: Environment, store: Store, name: str) -> None:
    """When `name` is the model suggestions go to: answer one here, as `shellfish suggest` would
    without the daemon, and throw the answer away. The system turn every suggestion opens with
    is then kept on disk (engine.kvcache.DiskPrefixes), so the user's first suggestion reads it
    instead of prefilling it. Nothing is recorded in the history; a failure fails nothing."""
    from shellfish.client import stream
    from shellfish.errors import ShellfishError
    from shellfish.events import Done, Error
    from shellfish.request import TaskRequest
    from shellfish.shell.context import current_context
    from shellfish.store.routing import pick_model

    try:
        if pick_model("suggest", env.settings, store) != name:
            return
    except ShellfishError:
        return
    request = TaskRequest(
        task="suggest", text="list the files here", model=name, context=current_context(env)
    )
    try:
        events = list(stream(request, env, backend="inprocess", record=False))
    except ShellfishError as exc:
        events = [Error(exc.message)]
    problem = next((e.message for e in events if isinstance(e, Error)), None)
    if problem is None and any(isinstance(e, Done) for e in events):
        env.info(f"model {name}: answered a first suggestion (its prompt's start is now cached)")
    else:
        env.warn(f"model {name}: a first suggestion failed: {problem or 'no answer'}")


def _ensure_knowledge(env: Environment) -> None:
    """Build the knowledge index (shipped pairs and tldr pages, this machine's programs and
    history) unless one exists: suggestions retrieve examples from the first request on."""
    from shellfish.cli.knowledge import build
    from shellfish.knowledge.index import index_mtime

    if index_mtime(env.paths.knowledge):
        env.info(f"knowledge index: already built at {env.paths.knowledge} (nothing to do)")
        return
    env.info("knowledge index: " + build(env))
