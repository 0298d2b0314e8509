"""The thin CLI: parse arguments, call library code, render, map errors to exit statuses.

Each sub-command lives in its own module here and exposes `register(subparsers)`; the module
sets `func(args, env) -> int` on its parser. This is the one place that turns a
`ShellfishError` into a message and an exit status. Heavy libraries are imported lazily by the
commands that need them, so `shellfish init zsh` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from shellfish import __version__
from shellfish.environment import Environment
from shellfish.errors import ExitStatus, ShellfishError

# Order here is the order in `shellfish --help`.
COMMAND_MODULES = (
    "generate",  # suggest, prompt, translate, explain, ask
    "models",
    "setup",
    "daemon",
    "serve",
    "shell",  # init, context
    "repl",
    "history",
    "config",
    "doctor",
    "knowledge",
    "evaluate",
    "tune",
    "bench",
)


# Internal commands (the shell widgets' slow path): they work, but no usage text lists them.
HIDDEN_COMMANDS = frozenset({"widget"})


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose "invalid choice" message leaves the hidden commands out."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            shown = ", ".join(repr(c) for c in action.choices if c not in HIDDEN_COMMANDS)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {shown})")
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shellfish",
        description=(
            "A local-first terminal assistant. Models run on this machine through ONNX Runtime; "
            "nothing is sent anywhere unless you enable the remote fallback. "
            "Run with no command for the interactive REPL."
        ),
    )
    parser.add_argument("--version", action="version", version=f"shellfish {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say which model and backend answered, and timings",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"shellfish.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"shellfish.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment.from_process()
    from shellfish.request import clean_text

    # Bytes that are not UTF-8 arrive as lone surrogates (surrogateescape): make them U+FFFD.
    argv = [clean_text(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["repl", *(argv or [])])
        if not hasattr(args, "func"):
            parser.print_help(env.stderr)
            return ExitStatus.USAGE
    try:
        return int(args.func(args, env))
    except ShellfishError as exc:
        env.error(str(exc))
        return int(exc.exit_status)
    except KeyboardInterrupt:
        env.stderr.write("\n")
        env.stderr.flush()
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error worth a traceback.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush
        return int(ExitStatus.OK)
