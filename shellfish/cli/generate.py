"""Generation commands: suggest, prompt, translate, explain, ask."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from shellfish.environment import Environment
from shellfish.errors import ExitStatus, UsageError
from shellfish.events import Done, Error, Event, Status, Token
from shellfish.request import TaskRequest


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "suggest",
        help="turn words into one shell command",
        description=(
            "Turn a request in plain words into one shell command, checked against this machine "
            "(program installed, line parses, flags exist; dangerous commands flagged). "
            "When stdout is not a TTY only the command is printed."
        ),
    )
    p.add_argument("text", nargs="*", help="what you want to do (read from stdin when omitted)")
    p.add_argument(
        "--alternatives", "-a", action="store_true", help="show every candidate, best first"
    )
    _add_common(p)
    p.set_defaults(func=_suggest)

    p = subparsers.add_parser(
        "prompt",
        help="free generation from a prompt",
        description="Continue a prompt with a local model (stdin accepted).",
    )
    p.add_argument("text", nargs="*", help="the prompt (read from stdin when omitted)")
    _add_common(p)
    p.set_defaults(func=_generic, task="prompt")

    p = subparsers.add_parser(
        "translate",
        help="translate text",
        description=(
            "Translate text (flan-T5 task prefix on T5 models, an instruction on instruct models)."
        ),
    )
    p.add_argument("text", nargs="*", help="the text (read from stdin when omitted)")
    p.add_argument(
        "--to",
        required=True,
        dest="to_lang",
        metavar="LANG",
        help="target language: de, fr, ro, ...",
    )
    p.add_argument(
        "--from",
        default="en",
        dest="from_lang",
        metavar="LANG",
        help="source language (default en)",
    )
    _add_common(p)
    p.set_defaults(func=_generic, task="translate")

    p = subparsers.add_parser(
        "explain", help="explain a shell command", description="Explain what a shell command does."
    )
    p.add_argument("text", nargs="*", help="the command (read from stdin when omitted)")
    _add_common(p)
    p.set_defaults(func=_generic, task="explain")

    p = subparsers.add_parser(
        "ask",
        help="answer a question, optionally grounded in a text",
        description="Answer a question; with --context, answer from that text only.",
    )
    p.add_argument("text", nargs="*", help="the question")
    p.add_argument(
        "--context",
        metavar="FILE|-",
        help="a file (or - for stdin) holding the text to answer from",
    )
    _add_common(p)
    p.set_defaults(func=_generic, task="ask")


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and backend")
    g.add_argument("-m", "--model", help="model name or alias (default: routed by task)")
    g.add_argument(
        "--provider", choices=("cpu", "coreml", "cuda"), help="execution provider (default cpu)"
    )
    g.add_argument(
        "--coreml",
        dest="provider",
        action="store_const",
        const="coreml",
        help="use CoreML (macOS), falling back to CPU",
    )
    g.add_argument(
        "--cuda",
        dest="provider",
        action="store_const",
        const="cuda",
        help="use CUDA where present, falling back to CPU",
    )
    g.add_argument("--threads", type=int, help="intra-op threads (default: one per physical core)")
    g.add_argument(
        "--remote",
        dest="backend",
        action="store_const",
        const="remote",
        help="use the remote endpoint",
    )
    g.add_argument(
        "--local",
        dest="backend",
        action="store_const",
        const="local",
        help="never send anything off this machine",
    )
    g.add_argument(
        "--no-daemon",
        dest="backend",
        action="store_const",
        const="inprocess",
        help="run in this process even if the daemon runs",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # keep `shellfish -v suggest` working too
        help="say which model and backend answered, and timings",
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with the answer, model and timings",
    )
    g = p.add_argument_group("generation")
    g.add_argument("--max-tokens", type=int, dest="max_new_tokens", help="most new tokens")
    g.add_argument("-t", "--temperature", type=float, help="0 = greedy")
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--repetition-penalty", type=float)
    g.add_argument("-n", type=int, dest="n", help="number of samples")
    g.add_argument("--seed", type=int)
    g.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    g.add_argument("--beams", type=int, dest="num_beams", help="beam search width (seq2seq models)")
    g.add_argument(
        "--prompt-lookup",
        type=int,
        metavar="N",
        help="greedy decoder-only models: guess up to N tokens from the prompt and check them"
        " in one pass (same answer, faster when it copies the prompt; 0: off)",
    )


GENERATION_FLAGS = (
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "n",
    "seed",
    "stop",
    "num_beams",
    "prompt_lookup",
)


def _read_text(args: argparse.Namespace, env: Environment) -> str:
    text = " ".join(args.text).strip()
    if not text and not env.stdin_isatty:
        text = env.read_stdin().strip()
    if not text:
        raise UsageError(
            "nothing to do: the request is empty", hint=f'try `shellfish {args.command} "..."`'
        )
    return text


def _request(task: str, args: argparse.Namespace, env: Environment, **options: Any) -> TaskRequest:
    env.override_settings({"engine.provider": args.provider, "engine.threads": args.threads})
    generation = {
        k: getattr(args, k) for k in GENERATION_FLAGS if getattr(args, k, None) is not None
    }
    context = None
    if task in ("suggest", "explain"):
        from shellfish.shell.context import current_context

        context = current_context(env)
    return TaskRequest(
        task=task,
        text=_read_text(args, env),
        model=args.model,
        generation=generation,
        context=context,
        options={k: v for k, v in options.items() if v is not None},
    )


def _events(request: TaskRequest, args: argparse.Namespace, env: Environment) -> Iterator[Event]:
    from shellfish.client import stream

    # Not recorded here: the commands record once the answer is shown (record_answer).
    for event in stream(request, env, backend=args.backend, record=False):
        if isinstance(event, Error):
            from shellfish.errors import ShellfishError

            raise ShellfishError(event.message, hint=event.hint)
        yield event


def _generic(args: argparse.Namespace, env: Environment) -> int:
    options: dict[str, Any] = {}
    if args.task == "translate":
        options = {"to": args.to_lang, "from": args.from_lang}
    if args.task == "ask" and args.context:
        options = {"context": _read_context(args.context, env)}
    request = _request(args.task, args, env, **options)
    events = _events(request, args, env)
    if args.json:
        done = _drain(events, env, verbose=args.verbose)
        _print_json(env, request, done)
        _record(request, env, done)
        return ExitStatus.OK
    from shellfish.ui.render import render_stream

    done = render_stream(events, env, markdown=args.task in ("explain", "ask"))
    if done is not None and args.verbose:
        _say_model(env, done)
    _record(request, env, done)
    return ExitStatus.OK if done is not None else ExitStatus.ERROR


def _record(request: TaskRequest, env: Environment, done: Done | None) -> None:
    """History is written after the answer is printed: a busy log never delays the answer."""
    if done is not None:
        from shellfish.client import record_answer

        record_answer(request, env, done)


def _suggest(args: argparse.Namespace, env: Environment) -> int:
    request = _request("suggest", args, env)
    # No length note: suggest samples several candidates, and one that rambles to the limit
    # says nothing about the command shown.
    done = _drain(_events(request, args, env), env, verbose=args.verbose, length_note=False)
    if done is None:
        return ExitStatus.ERROR
    try:
        return _show_suggestion(args, env, request, done)
    finally:
        _record(request, env, done)


def _show_suggestion(
    args: argparse.Namespace, env: Environment, request: TaskRequest, done: Done
) -> int:
    if args.json:
        _print_json(env, request, done)
        return ExitStatus.OK
    commands = done.texts if args.alternatives else done.texts[:1]
    if not commands or not commands[0].strip():
        raise UsageError("the model gave no command", hint="rephrase the request, or try --remote")
    warnings = list(done.extra.get("warnings", []))
    if env.stdout_isatty:
        from shellfish.ui.render import show_command

        show_command(env, commands, warnings)
    else:
        for line in warnings:
            env.warn(line)
        env.stdout.write("\n".join(commands) + "\n")
        env.stdout.flush()
    return ExitStatus.OK


def _drain(
    events: Iterator[Event], env: Environment, *, verbose: bool, length_note: bool = True
) -> Done | None:
    """Consume a stream without showing tokens; status lines go to stderr when verbose."""
    done = None
    for event in events:
        if isinstance(event, Done):
            done = event
        elif isinstance(event, Status) and (verbose or _must_show(event)):
            env.info(event.message)
        elif isinstance(event, Token):
            continue
    if done is not None:
        from shellfish.ui.render import length_note as note_for

        note = note_for(done) if length_note else None
        if note:
            env.info(note)
        if verbose:
            _say_model(env, done)
    return done


def _must_show(event: Status) -> bool:
    """Notices a user must see even without --verbose: what is sent remotely, retries, fallbacks."""
    return any(key in event.data for key in ("notice", "retry", "fallback"))


def _say_model(env: Environment, done: Done) -> None:
    from shellfish.ui.render import decode_rate

    # Decode speed only: the first token's time holds loading and prefill.
    rate = decode_rate(done.completion_tokens, done.first_token_ms / 1000, done.total_ms / 1000)
    env.info(
        f"model: {done.model} ({done.backend}) - {done.prompt_tokens} prompt + "
        f"{done.completion_tokens} new tokens, first token {done.first_token_ms:.0f} ms, "
        f"total {done.total_ms:.0f} ms"
        + (f", {rate:.1f} tok/s after the first token" if rate is not None else "")
    )


def _print_json(env: Environment, request: TaskRequest, done: Done | None) -> None:
    payload: dict[str, Any] = {"task": request.task, "request": request.text}
    if done is not None:
        payload.update(
            text=done.text,
            texts=done.texts,
            model=done.model,
            backend=done.backend,
            finish_reason=done.finish_reason,
            tokens={"prompt": done.prompt_tokens, "completion": done.completion_tokens},
            timings_ms={
                "load": done.load_ms,
                "prefill": done.prefill_ms,
                "first_token": done.first_token_ms,
                "total": done.total_ms,
            },
        )
        for key in ("candidates", "warnings"):
            if key in done.extra:
                payload[key] = done.extra[key]
    env.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    env.stdout.flush()


def _read_context(source: str, env: Environment) -> str:
    if source == "-":
        return env.read_stdin()
    from pathlib import Path

    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the context file {path}: {exc.strerror}") from exc
