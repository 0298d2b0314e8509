"""`run_suggest`: one suggest or fix request through the stages of `shellfish.suggest`.

retrieve -> prompt -> generate -> gather candidates -> check -> rank -> rewrite a retrieved
winner with this request's arguments (`_adapt`) -> one `Done` event. See the package docstring
for the modes and for what the events carry.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from shellfish.errors import UsageError
from shellfish.events import Done, Error, Event, Status, Token
from shellfish.shell.syntax import parse
from shellfish.suggest.candidates import Candidate, certainty, clean_answer, command_key, dedupe
from shellfish.suggest.checks import check_candidates, mark_dangers
from shellfish.suggest.prompts import build_messages, render_prompt
from shellfish.suggest.ranking import (
    low_confidence_warning,
    rank_by_position,
    rank_candidates,
    vote_group,
)
from shellfish.suggest.retrieval import Retrieved, neighbour_candidates, retrieve
from shellfish.suggest.timing import StageClock

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.engine.base import GenerationConfig, Runner
    from shellfish.paths import Paths
    from shellfish.request import TaskRequest

MODES = ("zero-shot", "retrieval", "full")
# How many retrieved examples / option lines go into the prompt: small enough for the prefix
# cache and the one-second budget on a laptop CPU.
MAX_EXAMPLES = 3
MAX_OPTION_LINES = 0
MAX_NEW_TOKENS = 48
# Guessed tokens checked per pass (engine/causal.py, prompt lookup; greedy decoder-only
# models whose graph allows it). 4 decoded fastest of 4 and 8 on 30 dev requests
# (`benchmarks/prompt_lookup.py`); still greedy decoding, though a several-token pass rounds
# differently from one-token passes (29 of those 30 first commands were the same).
PROMPT_LOOKUP = 4
# How many retrieved commands (NL->command pairs, history) join the model's answer as
# candidates in `full` mode, and vote on the programs (see `rank_candidates`). Chosen on NL2Bash
# dev items 100-399; 3, 5 and 8 were within 0.005 of each other there.
VOTING_NEIGHBOURS = 5
# When a retrieved command wins the vote, ask the model for the same programs with this
# request's own arguments (`_adapt`).
ADAPT_RETRIEVED = True
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def run_suggest(
    request: TaskRequest,
    runner: Runner,
    *,
    settings: Settings,
    paths: Paths,
    cancel: threading.Event | None = None,
    mode: str = "full",
) -> Iterator[Event]:
    """Stream the events answering a suggest or fix request (see the package docstring)."""
    from shellfish.store.pool import queue_waited_ms

    mode = _checked_mode(request, mode)
    clock = StageClock(waited=queue_waited_ms)  # its times leave out waiting for a busy model
    found = _retrieve(request, paths, mode)
    clock.lap("retrieval")
    for warning in found.warnings:
        yield Status(warning, {"warning": True})
    prompt = render_prompt(runner, build_messages(request, found.examples, found.option_lines))
    config = _generation_config(runner, request, mode)
    clock.lap("prompt")
    done = yield from _generate(runner, prompt, config, cancel)
    clock.lap_generation(done)
    if done is None:  # a runner that ended without Done: treat as cancelled
        yield Done(texts=[], finish_reason="cancelled", extra={"candidates": []})
        return
    candidates = _gather(request, done, found, mode)
    clock.lap("candidates")
    if request.task == "fix":
        candidates = _fix_candidates(candidates, request)
        if not candidates:
            yield Error(
                f"no fix found for `{request.text}`",
                code="no_fix",
                hint="nothing different from it came back; its own error message says more",
            )
            return
    if mode == "full":
        check_candidates(candidates, request, found.index)
        clock.lap("checks")
        may_win = runner.info.extra.get("suggest", {}).get("retrieved_may_win", True)
        rank_candidates(candidates, retrieved_may_win=bool(may_win))
        clock.lap("rank")
        if ADAPT_RETRIEVED and candidates and candidates[0].source == "retrieved":
            adapted = _adapt(candidates, runner, prompt, config, request, cancel)
            clock.lap("adapt")
            if adapted is not None:
                check_candidates([adapted], request, found.index)
                clock.lap("checks")
                candidates.append(adapted)
                rank_candidates(candidates, retrieved_may_win=bool(may_win))
                clock.lap("rank")
    else:
        mark_dangers(candidates, request)
        rank_by_position(candidates)
        clock.lap("rank")
    yield _answer(done, candidates, found, mode, clock)


def _checked_mode(request: TaskRequest, mode: str) -> str:
    """The request's mode (its option over the caller's default); refuses bad requests."""
    mode = str(request.options.get("mode") or mode)
    if mode not in MODES:
        raise UsageError(f"unknown suggest mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if not request.text.strip():
        raise UsageError("the request is empty", hint="say what you want in words")
    return mode


def _retrieve(request: TaskRequest, paths: Paths, mode: str) -> Retrieved:
    n_examples = _count_option(request, "examples", MAX_EXAMPLES)
    n_option_lines = _count_option(request, "option_lines", MAX_OPTION_LINES)
    if mode == "zero-shot":
        return Retrieved()
    return retrieve(
        request,
        paths,
        examples=n_examples,
        option_lines=n_option_lines,
        hits=max(2 * n_examples, 2 * VOTING_NEIGHBOURS),
    )


def _generate(
    runner: Runner, prompt: str, config: GenerationConfig, cancel: threading.Event | None
) -> Generator[Event, None, Done | None]:
    """Pass on the first answer's tokens and the runner's other events; return its `Done`."""
    done: Done | None = None
    for event in runner.generate(prompt, config, cancel=cancel):
        if isinstance(event, Token):
            if event.index == 0:
                yield event
        elif isinstance(event, Done):
            done = event
        else:
            yield event
    return done


def _gather(request: TaskRequest, done: Done, found: Retrieved, mode: str) -> list[Candidate]:
    """The model's answers (weights 1, 1/2, ...) and in `full` mode the nearest neighbours."""
    logprobs = list(done.extra.get("mean_logprobs") or [])
    candidates = [
        Candidate(
            command=clean_answer(text, request),
            source="model",
            rank=i,
            certainty=certainty(logprobs[i] if i < len(logprobs) else None),
            weight=1.0 / (1 + i),
        )
        for i, text in enumerate(done.texts)
    ]
    # A fix's retrieved commands match the words of a broken line, not what it meant: they
    # stay examples in the prompt but do not vote (measured: benchmarks/fix_quality.py).
    if mode == "full" and request.task != "fix":
        candidates += neighbour_candidates(found.hits, request, VOTING_NEIGHBOURS)
    return dedupe([c for c in candidates if c.command])


def _fix_candidates(candidates: list[Candidate], request: TaskRequest) -> list[Candidate]:
    """Fix candidates: the mechanical corrections (nearest program / file name, see
    `shellfish.suggest.failure.rewrites`) join the model's answers, voting like a model answer,
    and no candidate is the failed command itself (whitespace aside)."""
    from shellfish.suggest.failure import analyse, rewrites

    failed = command_key(request.text)
    extra = [
        Candidate(command=line, source="rewrite", rank=i, weight=1.0 / (1 + i))
        for i, line in enumerate(rewrites(analyse(request.text, request.context)))
    ]
    kept = [c for c in candidates if command_key(c.command) != failed]
    return dedupe(kept + [c for c in extra if command_key(c.command) != failed])


def _adapt(
    candidates: list[Candidate],
    runner: Runner,
    prompt: str,
    config: GenerationConfig,
    request: TaskRequest,
    cancel: threading.Event | None,
) -> Candidate | None:
    """The model's answer again, made to start with the voted program (None if no help).

    A retrieved command that wins the vote carries another request's arguments. Starting the
    answer with its first program and letting the model write the rest gives this request's
    own arguments; the prefix cache holds the prompt already, so this costs the decoding only.
    The adapted answer is kept only if it uses the same programs as the winner; it brings no
    vote of its own, and as a model answer it then leads the winner's group. Otherwise the
    retrieved command stands.
    """
    programs = vote_group(candidates[0].command)
    first = _leading_program(candidates[0].command)
    if not first:
        return None
    done = _last_done(runner.generate(prompt + first, config.merged(n=1), cancel=cancel))
    if done is None or done.finish_reason == "cancelled":
        return None
    command = clean_answer(first + (done.texts[0] if done.texts else ""), request)
    if vote_group(command) != programs:
        return None
    if any(command_key(command) == command_key(c.command) for c in candidates):
        return None
    logprobs = list(done.extra.get("mean_logprobs") or [])
    return Candidate(
        command=command,
        source="model",
        rank=1,
        certainty=certainty(logprobs[0] if logprobs else None),
        weight=0.0,  # it adds no evidence of its own: it leads the winner's group
    )


def _leading_program(command: str) -> str:
    """The program word `command` starts with, exactly as typed.

    "" when the line starts with anything else (an assignment, a wrapper, a keyword, a path,
    quotes): then there is no clean first word to start the model's answer with.
    """
    commands = parse(command).commands
    word = commands[0].program if commands else ""
    if not word or commands[0].words[:1] != (word,) or not _PLAIN_WORD.fullmatch(word):
        return ""
    return word if re.match(re.escape(word) + r"(\s|$)", command) else ""


def _last_done(events: Iterator[Event]) -> Done | None:
    done: Done | None = None
    for event in events:
        if isinstance(event, Done):
            done = event
    return done


def _answer(
    done: Done,
    candidates: list[Candidate],
    found: Retrieved,
    mode: str,
    clock: StageClock,
) -> Done:
    """The final event: ranked commands, the runner's figures, and what the stages found."""
    elapsed_ms = clock.total_ms()
    best = candidates[0] if candidates else None
    # `warnings` already holds each danger as "danger: ..." once checked (full mode)
    warnings = ((best.warnings or best.danger) + best.problems) if best else []
    low = low_confidence_warning(best) if best is not None and mode == "full" else None
    if low:
        warnings.append(low)
    cut = best is not None and best.source == "model" and best.rank == 0
    if cut and done.finish_reason == "length" and len(done.texts) == 1:
        warnings.append(
            f"stopped at {done.completion_tokens} tokens: the command may be cut off "
            "(--max-tokens to raise)"
        )
    extra = {
        "candidates": [c.to_dict() for c in candidates],
        "warnings": warnings,
        "retrieved": [h.doc.id for h in found.hits],
        "mode": mode,
        "suggest_ms": round(elapsed_ms, 1),
        "stages_ms": clock.rounded(),
    }
    return Done(
        texts=[c.command for c in candidates],
        model=done.model,
        backend=done.backend,
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        load_ms=done.load_ms,
        prefill_ms=done.prefill_ms,
        first_token_ms=done.first_token_ms,
        total_ms=elapsed_ms,
        finish_reason=done.finish_reason,
        extra={**done.extra, **extra},
    )


def _count_option(request: TaskRequest, key: str, default: int) -> int:
    value = request.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32:
        raise UsageError(f"option {key!r} must be a whole number from 0 to 32, not {value!r}")
    return value


def _generation_config(runner: Runner, request: TaskRequest, mode: str) -> GenerationConfig:
    overrides: dict[str, Any] = {
        "max_new_tokens": MAX_NEW_TOKENS,
        "stop": ("\n", "<|im_end|>", "```"),
        # Commands copy the request and the examples (paths, names, flags): guess from them.
        "prompt_lookup": PROMPT_LOOKUP,
        # The system turn is the same for every request from this OS and shell, and holds no
        # path or request (suggest/prompts.py): a one-shot run reads its state from disk.
        "keep_system_turn": True,
        # The model's certainty (mean log-probability) feeds the vote and the confidence.
        "logprobs": True,
    }
    if mode == "full":
        n = int(request.options.get("candidates") or 1)
        if n > 1:
            overrides.update(n=n, temperature=0.7, top_p=0.95)
    overrides.update(request.generation)
    config = runner.info.defaults.merged(**overrides)
    config.validate()
    return config
