"""Shell integration commands: `init`, `context`, and the hidden `widget` the scripts call."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from shellfish.environment import Environment
from shellfish.errors import ExitStatus, ShellfishError, UsageError

if TYPE_CHECKING:
    from shellfish.events import Done, Event


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help="print the zsh/bash integration script",
        description=(
            'Print the shell integration script. Add `eval "$(shellfish init zsh)"` to ~/.zshrc '
            '(or `eval "$(shellfish init bash)"` to ~/.bashrc); nothing edits rc files for you. '
            "To start no Python process with each shell, save the output to a file once and "
            "`source` that file instead."
        ),
    )
    p.add_argument("shell", choices=("zsh", "bash"), help="the shell to integrate with")
    p.add_argument("--path", action="store_true", help="print where the script file is instead")
    p.set_defaults(func=_init)

    p = subparsers.add_parser(
        "context",
        help="show the shell context a request would send; turn capture off or on",
        description=(
            "Show exactly the context (cwd, recent commands with exit status, git branch, OS, "
            "shell) that a request from this shell would send, after redaction. Capture can be "
            "turned off with --off (persistent) or SHELLFISH_CONTEXT_CAPTURE=0 (this session)."
        ),
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the context as JSON")
    group.add_argument(
        "--off", action="store_true", help="stop recording context and delete what was recorded"
    )
    group.add_argument("--on", action="store_true", help="record context again")
    p.set_defaults(func=_context)

    # Hidden: the widgets' slow path when no daemon answers. Reads the text on stdin and prints
    # marker lines (shellfish/shell/markers.py), exactly like the daemon's `lines` replies.
    p = subparsers.add_parser(
        "widget", description="(internal) answer a shell widget with marker lines"
    )
    p.add_argument("task", choices=("suggest", "fix"))
    p.add_argument("--shell", default="zsh", choices=("zsh", "bash"))
    p.add_argument(
        "--context-extra", default="{}", metavar="JSON", help="extra context fields (JSON object)"
    )
    p.add_argument("--model", "-m", default=None)
    p.set_defaults(func=_widget)


def _init(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.shell.init import render, script_path

    if args.path:
        env.stdout.write(f"{script_path(args.shell)}\n")
    else:
        env.stdout.write(render(args.shell, env.paths))
    env.stdout.flush()
    return ExitStatus.OK


def _context(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.shell.context import capture_enabled, context_dir, current_context, off_marker

    if args.off or args.on:
        from shellfish.config import set_config_value
        from shellfish.paths import ensure_private_dir

        set_config_value(env.paths.config_file, "context.capture", "false" if args.off else "true")
        directory = ensure_private_dir(context_dir(env.paths))
        if args.off:
            off_marker(env.paths).touch(mode=0o600)
            removed = 0
            for path in directory.glob("*.ctx"):
                path.unlink(missing_ok=True)
                removed += 1
            env.info(f"context capture is off; removed {removed} recorded session file(s)")
        else:
            off_marker(env.paths).unlink(missing_ok=True)
            env.info("context capture is on")
        return ExitStatus.OK

    context = current_context(env)
    if args.json:
        env.stdout.write(json.dumps(context, ensure_ascii=False, indent=2) + "\n")
    elif context is None:
        env.stdout.write("context capture is off: requests carry no shell context\n")
        if not capture_enabled(env):
            env.info(
                "turn it on with `shellfish context --on` (and unset SHELLFISH_CONTEXT_CAPTURE)"
            )
    else:
        out = [
            f"{key}: {context[key]}"
            for key in ("cwd", "shell", "os", "git_branch")
            if key in context
        ]
        recent = context.get("recent", [])
        out.append(
            f"recent commands ({len(recent)}):" if recent else "recent commands: none recorded"
        )
        for item in recent:
            out.append(
                f"  [exit {item['exit']}, {item['duration_ms']} ms, in {item['cwd']}] {item['cmd']}"
            )
        env.stdout.write("\n".join(out) + "\n")
    env.stdout.flush()
    return ExitStatus.OK


def _widget(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.events import Error
    from shellfish.shell import markers

    answers: list[tuple[Any, Any]] = []
    try:
        lines = markers.reply_lines(_widget_final(args, env, answers))
    except ShellfishError as exc:
        lines = markers.reply_lines(Error(exc.message, hint=exc.hint))
    except KeyboardInterrupt:
        lines = markers.error_lines(markers.CANCELLED)
    except Exception as exc:  # the widget must always get an answer it can show
        lines = markers.error_lines(f"internal error: {type(exc).__name__}: {exc}")
    # Bytes, as the daemon writes them on its socket: the two paths must not differ.
    env.stdout.write(markers.encode(lines).decode("utf-8"))
    env.stdout.flush()
    if answers:  # after the answer is out: a busy history log never delays it
        from shellfish.client import record_answer

        request, done = answers[0]
        record_answer(request, env, done)
    return ExitStatus.OK


def _widget_final(
    args: argparse.Namespace, env: Environment, answers: list[tuple[Any, Any]]
) -> Event | None:
    """The final event (Done or Error) answering the widget's request; None when none came.
    (request, Done) goes to `answers`, to be recorded once the reply is out."""
    import dataclasses

    from shellfish.events import Done, Error
    from shellfish.request import TaskRequest
    from shellfish.shell.context import current_context

    text = env.read_stdin()
    text = text[:-1] if text.endswith("\n") else text  # the here-string's newline
    if not text.strip():
        raise UsageError("nothing to do: the line is empty")
    try:
        extra: Any = json.loads(args.context_extra or "{}")
    except json.JSONDecodeError as exc:
        raise UsageError(f"--context-extra is not JSON: {exc.msg}") from exc
    if not isinstance(extra, dict):
        raise UsageError("--context-extra must be a JSON object")
    if args.task == "fix":  # the failed program's nearest names are looked up on this PATH
        extra.setdefault("path", env.environ.get("PATH", ""))
    context = current_context(env, shell=args.shell)
    if context is not None:
        context.update(extra)
    else:  # no context; the fix key's own facts about the failed command still go
        context = {k: extra[k] for k in ("last_exit_status", "path") if k in extra} or None
    request = TaskRequest(task=args.task, text=text, model=args.model, context=context)

    from shellfish.client import stream

    done: Done | None = None
    for event in stream(request, env, record=False):
        if isinstance(event, Error):
            return event
        if isinstance(event, Done):
            done = event
    if done is None:
        return None
    answers.append((request, done))
    if not isinstance(done.extra.get("warnings"), list):
        # A remote answer carries no checks of its own: warn about it as about a local one.
        warnings = _best_command_warnings(done.texts, args.shell)
        done = dataclasses.replace(done, extra={**done.extra, "warnings": warnings})
    return done


def _best_command_warnings(commands: list[str], shell: str) -> list[str]:
    """The checks' warnings for the best command, for an answer that came without any."""
    best = next((c.strip() for c in commands if c.strip()), "")
    if not best:
        return []
    from shellfish.suggest.checks import validate_command

    return validate_command(best, shell=shell).warnings
