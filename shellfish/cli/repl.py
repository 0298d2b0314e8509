"""`shellfish repl` (also `shellfish` with no command): the interactive REPL."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from shellfish.errors import UsageError

if TYPE_CHECKING:
    from shellfish.environment import Environment


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("repl", help="the interactive REPL (the default with no command)")
    p.add_argument("--model", help="answer with this model (default: routed by task)")
    p.add_argument("--temperature", type=float, help="sampling temperature (0 = greedy)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--remote",
        dest="backend",
        action="store_const",
        const="remote",
        help="use the remote endpoint (needs remote.policy auto or remote)",
    )
    g.add_argument(
        "--local", dest="backend", action="store_const", const="local", help="use local models only"
    )
    p.add_argument("--no-context", action="store_true", help="do not attach shell context")
    p.set_defaults(func=cmd_repl, model=None, temperature=None, backend=None, no_context=False)


def _model_names(env: Environment) -> list[str]:
    from shellfish.store.store import Store

    return [m.name for m in Store(env.paths).installed()]


def cmd_repl(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.ui.repl import Repl

    if not env.stdin_isatty:
        raise UsageError(
            "the REPL needs a terminal",
            hint="for one-shot use try `shellfish ask`, `shellfish explain` or `shellfish suggest`",
        )
    if args.temperature is not None and args.temperature < 0:
        raise UsageError("--temperature must be >= 0")
    repl = Repl(env, model_names=lambda: _model_names(env))
    repl.state.model = args.model
    repl.state.temperature = args.temperature
    repl.state.use_context = not args.no_context
    if args.backend == "remote":
        repl.handle("/remote")
    elif args.backend == "local":
        repl.state.backend = "local"
    return repl.run()
