"""The suggest (and fix) task: words in, one checked shell command out.

Pipeline, by `mode`:
- ``zero-shot``: an instruction prompt (OS, shell, cwd) and the model's first answer.
- ``retrieval``: the prompt also carries examples retrieved from the local knowledge index
  (tldr pages, the user's redacted history, a configured NL->command pairs file) and the
  matching option lines from the local `--help` / man pages.
- ``full``: retrieval, plus several candidates (the model's answer and the nearest retrieved
  commands), each post-processed to one command line, validated (program installed, parses,
  flags exist locally, danger), then ranked by a vote over their programs (`rank_candidates`)
  with a confidence for each.

Events: `Token` events of the first candidate as it streams (or `Status` events), then one
`Done` whose `texts` are the ranked commands (best first) and whose `extra` holds
``candidates`` (command, valid, problems, danger, score, certainty, confidence), ``warnings``
(for the best, a low confidence included) and ``retrieved`` (ids of the examples used).
"""

from __future__ import annotations

import math
import platform
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shellfish.errors import UsageError
from shellfish.events import Done, Event, Status, Token

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.engine.base import GenerationConfig, Runner
    from shellfish.knowledge.index import Hit, KnowledgeIndex
    from shellfish.paths import Paths
    from shellfish.tasks.request import TaskRequest

MODES = ("zero-shot", "retrieval", "full")

SYSTEM = (
    "You translate a request into one {shell} command for {os_name}. "
    "Reply with the command only, on one line, no explanation, no code fences."
)
FIX_SYSTEM = (
    "The user's {shell} command on {os_name} failed. Reply with the corrected command only, on "
    "one line, no explanation, no code fences."
)

# How many retrieved examples / option lines go into the prompt: small enough for the prefix
# cache and the one-second budget on a laptop CPU.
MAX_EXAMPLES = 3
MAX_OPTION_LINES = 0
MAX_NEW_TOKENS = 48
# How many retrieved commands (NL->command pairs, history) join the model's answer as
# candidates in `full` mode, and vote on the programs (see `rank_candidates`). Chosen on NL2Bash
# dev items 100-399; 3, 5 and 8 were within 0.005 of each other there.
VOTING_NEIGHBOURS = 5
# When a retrieved command wins the vote, ask the model for the same programs with this
# request's own arguments (`_adapt`).
ADAPT_RETRIEVED = True
# Below this confidence the answer carries a warning ("check it before running it"): on NL2Bash
# dev, answers under 0.7 scored below zero on average, answers from 0.8 up clearly above.
LOW_CONFIDENCE = 0.7
# The assistant turn starts inside a bash code block: small models then write the command
# itself instead of prose about it, and the line ends at the first newline.
ANSWER_PREFIX = "```bash\n"


@dataclass
class Candidate:
    command: str
    source: str  # "model" | "retrieved"
    rank: int  # position within its source
    valid: bool = True
    problems: list[str] = field(default_factory=list)
    danger: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    score: float = 0.0
    similarity: float = 0.0  # of a retrieved example's words to the request (0..1)
    # model answers: exp(mean log-probability per token), the model's own certainty (0..1)
    certainty: float | None = None
    weight: float = 1.0  # its vote for its programs (see rank_candidates)
    confidence: float = 0.0  # 0..1, filled in by rank_candidates; calibrated on NL2Bash dev

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "valid": self.valid,
            "problems": list(self.problems),
            "danger": list(self.danger),
            "score": round(self.score, 4),
            "source": self.source,
            "similarity": round(self.similarity, 3),
            "certainty": None if self.certainty is None else round(self.certainty, 4),
            "confidence": round(self.confidence, 4),
        }


# ---------------------------------------------------------------------------------------------
# post-processing


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n?(.*?)(?:```|$)", re.S)
_PROMPT_PREFIX = re.compile(r"^\s*(?:\$|%|>|❯|➜)\s+")
_LABEL_PREFIX = re.compile(r"^\s*(?:command|answer|bash|zsh|shell|output)\s*:\s*", re.I)


def extract_command(text: str) -> str:
    """One command line out of a model's answer (fences, prompts, labels, prose removed).

    Returns "" when nothing command-like is left.
    """
    text = text.strip()
    fence = _FENCE.search(text)
    if fence and fence.group(1).strip():
        text = fence.group(1).strip()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        line = _LABEL_PREFIX.sub("", line)
        line = _PROMPT_PREFIX.sub("", line)
        if len(line) >= 2 and line[0] == line[-1] == "`":
            line = line.strip("`").strip()
        elif line.startswith("`") and "`" in line[1:]:
            line = line[1 : line.index("`", 1)].strip()
        if not line or line.startswith("#"):
            continue
        return _strip_trailing_semicolons(line)
    return ""


def _strip_trailing_semicolons(line: str) -> str:
    # A trailing `;` is noise, but `\;` ends a `find -exec` and must stay.
    line = line.strip()
    while line.endswith(";") and not line.endswith("\\;"):
        line = line[:-1].rstrip()
    return line


_PRIVILEGE_WORDS = re.compile(
    r"\b(sudo|root|superuser|admin\w*|privilege\w*|as another user)\b", re.I
)
# Small models copy `sudo` from retrieved examples into answers that do not need it.
DROP_UNREQUESTED_SUDO = True


def drop_unrequested_sudo(command: str, request_text: str) -> str:
    """`command` without a leading plain `sudo` unless the request asks for privileges."""
    if not command.startswith("sudo ") or _PRIVILEGE_WORDS.search(request_text):
        return command
    rest = command[len("sudo ") :].lstrip()
    if not rest or rest.startswith("-"):  # `sudo -u x ...`: an explicit choice, keep it
        return command
    return rest


# ---------------------------------------------------------------------------------------------
# prompt


def environment_facts(request: TaskRequest) -> dict[str, str]:
    """OS, shell and cwd of the request (GNU vs BSD userland follows from the OS)."""
    ctx = request.context or {}
    system = str(ctx.get("os") or platform.system() or "Linux")
    shell = str(ctx.get("shell") or "bash")
    shell = shell.rsplit("/", 1)[-1] or "bash"
    userland = "BSD" if system.lower() in ("darwin", "macos", "freebsd", "openbsd") else "GNU"
    os_name = "macOS" if system.lower() == "darwin" else system
    return {
        "os_name": os_name,
        "shell": shell,
        "userland": userland,
        "cwd": str(ctx.get("cwd") or ""),
    }


def build_messages(
    request: TaskRequest,
    examples: list[tuple[str, str]] | None = None,
    option_lines: list[str] | None = None,
) -> list[dict[str, str]]:
    """Chat messages: a system instruction, retrieved examples as prior turns, the request.

    Examples go in as earlier user/assistant turns because small instruct models copy the
    answer *format* of prior turns far more reliably than they follow a format instruction.
    """
    facts = environment_facts(request)
    template = FIX_SYSTEM if request.task == "fix" else SYSTEM
    system = template.format(**facts) + f" Use {facts['userland']} command-line flags."
    if facts["cwd"]:
        system += f" The current directory is {facts['cwd']}."
    messages = [{"role": "system", "content": system}]
    for nl, cmd in examples or []:
        messages.append({"role": "user", "content": nl})
        messages.append({"role": "assistant", "content": f"{ANSWER_PREFIX}{cmd}\n```"})
    user = _user_text(request)
    if option_lines:
        # In the last turn, not the system turn: the system turn must stay the same for every
        # request so that the prefix cache answers it.
        user += "\n(Relevant options on this machine:\n" + "\n".join(option_lines) + ")"
    messages.append({"role": "user", "content": user})
    return messages


def _user_text(request: TaskRequest) -> str:
    if request.task != "fix":
        return request.text
    ctx = request.context or {}
    status = ctx.get("last_exit_status")
    out = f"This command failed: {request.text}"
    if status is not None:
        out += f" (exit status {status})"
    stderr = ctx.get("last_stderr") or ctx.get("stderr")
    if stderr:
        out += f"\nError output: {str(stderr)[-400:]}"
    return out


def render_prompt(runner: Runner, messages: list[dict[str, str]]) -> str:
    """The exact prompt text for `runner` (its chat template, or a flan-style flat prompt)."""
    template = runner.info.template
    if template in ("flan", "plain"):
        parts = []
        for m in messages:
            if m["role"] == "system":
                parts.append(m["content"])
            elif m["role"] == "user":
                parts.append(f"Request: {m['content']}")
            else:
                parts.append(f"Command: {m['content']}")
        return "\n".join(parts) + "\nCommand:"
    try:
        from shellfish.engine.templates import render_chat
    except ImportError:  # the templates module is optional at this layer
        return _chatml(messages) + ANSWER_PREFIX
    return (
        render_chat(template, messages, tokenizer=getattr(runner, "tokenizer", None))
        + ANSWER_PREFIX
    )


def _chatml(messages: list[dict[str, str]]) -> str:
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + "<|im_start|>assistant\n"


# ---------------------------------------------------------------------------------------------
# the task


def run_suggest(
    request: TaskRequest,
    runner: Runner,
    *,
    settings: Settings,
    paths: Paths,
    cancel: threading.Event | None = None,
    mode: str = "full",
) -> Iterator[Event]:
    """Stream the events answering a suggest or fix request (see the module docstring)."""
    mode = str(request.options.get("mode") or mode)
    if mode not in MODES:
        raise UsageError(f"unknown suggest mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if not request.text.strip():
        raise UsageError("the request is empty", hint="say what you want in words")
    started = time.perf_counter()
    from shellfish.store.pool import queue_waited_ms

    waited = queue_waited_ms()  # total_ms leaves out time spent waiting for a busy model
    n_examples = _count_option(request, "examples", MAX_EXAMPLES)
    n_option_lines = _count_option(request, "option_lines", MAX_OPTION_LINES)
    hits: list[Hit] = []
    examples: list[tuple[str, str]] = []
    option_lines: list[str] = []
    index: KnowledgeIndex | None = None
    if mode != "zero-shot":
        from shellfish.errors import ShellfishError

        try:
            index = _load_index(paths)
        except ShellfishError as exc:  # a broken index must not break suggestions
            yield Status(f"knowledge index unusable: {exc}", {"warning": True})
        if index is None:
            yield Status(
                "no knowledge index - run `shellfish knowledge build` for better suggestions",
                {"warning": True},
            )
        else:
            hits = index.search(request.text, k=max(2 * n_examples, 2 * VOTING_NEIGHBOURS))
            examples = [(h.doc.text, h.doc.command) for h in hits if h.doc.command][:n_examples]
            examples.reverse()  # nearest example last, right before the request
            if n_option_lines:
                option_lines = index.option_lines(
                    request.text, [h.doc for h in hits], n_option_lines
                )
    messages = build_messages(request, examples, option_lines)
    prompt = render_prompt(runner, messages)
    config = _generation_config(runner, request, mode)
    texts: list[str] = []
    done: Done | None = None
    for event in runner.generate(prompt, config, cancel=cancel):
        if isinstance(event, Token):
            if event.index == 0:
                yield event
        elif isinstance(event, Done):
            done = event
            texts = list(event.texts)
        else:
            yield event
    if done is None:  # a runner that ended without Done: treat as cancelled
        yield Done(texts=[], finish_reason="cancelled", extra={"candidates": []})
        return
    commands = [_clean(t, request) for t in texts]
    mean_logprobs = list(done.extra.get("mean_logprobs") or [])
    candidates = [
        Candidate(
            command=c,
            source="model",
            rank=i,
            certainty=_certainty(mean_logprobs[i] if i < len(mean_logprobs) else None),
            weight=1.0 / (1 + i),
        )
        for i, c in enumerate(commands)
    ]
    if mode == "full":
        neighbours = [h for h in hits if h.doc.command and h.doc.kind in ("pair", "history")]
        top = max((h.score for h in neighbours), default=0.0) or 1.0
        candidates += [
            Candidate(
                command=h.doc.command,
                source="retrieved",
                rank=i,
                similarity=request_similarity(request.text, h.doc.text),
                weight=(h.score / top) ** 2 / (1 + i),
            )
            for i, h in enumerate(neighbours[:VOTING_NEIGHBOURS])
        ]
    candidates = _dedupe([c for c in candidates if c.command])
    if mode == "full":
        from shellfish.knowledge.validate import validate_candidates

        validate_candidates(candidates, request, paths, index)
        rank_candidates(candidates)
        if ADAPT_RETRIEVED and candidates and candidates[0].source == "retrieved":
            adapted = _adapt(candidates, runner, prompt, config, request, cancel)
            if adapted is not None:
                validate_candidates([adapted], request, paths, index)
                candidates.append(adapted)
                rank_candidates(candidates)
    else:
        for c in candidates:
            c.score = 1.0 / (1 + c.rank)
            c.confidence = c.certainty if c.certainty is not None else 1.0
    best = candidates[0] if candidates else None
    # `warnings` already holds each danger as "danger: ..." once validated (full mode)
    warnings = ((best.warnings or best.danger) + best.problems) if best else []
    if best is not None and mode == "full" and best.confidence < LOW_CONFIDENCE:
        warnings.append(f"low confidence ({best.confidence:.2f}): check it before running it")
    extra = {
        "candidates": [c.to_dict() for c in candidates],
        "warnings": warnings,
        "retrieved": [h.doc.id for h in hits],
        "mode": mode,
        "suggest_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    yield Done(
        texts=[c.command for c in candidates],
        model=done.model,
        backend=done.backend,
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        load_ms=done.load_ms,
        prefill_ms=done.prefill_ms,
        first_token_ms=done.first_token_ms,
        total_ms=(time.perf_counter() - started) * 1000 - (queue_waited_ms() - waited),
        finish_reason=done.finish_reason,
        extra={**done.extra, **extra},
    )


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
    best = candidates[0]
    programs = _programs(best.command)
    first = (best.command.split() or [""])[0]
    if not programs or first != programs[0]:
        return None  # starts with an assignment, a keyword or a path: no clean first word
    text = ""
    done: Done | None = None
    for event in runner.generate(prompt + first, config.merged(n=1), cancel=cancel):
        if isinstance(event, Done):
            done = event
            text = event.texts[0] if event.texts else ""
    if done is None or done.finish_reason == "cancelled":
        return None
    command = _clean(first + text, request)
    if _programs(command) != programs:
        return None
    if any(_command_key(command) == _command_key(c.command) for c in candidates):
        return None
    logprobs = list(done.extra.get("mean_logprobs") or [])
    return Candidate(
        command=command,
        source="model",
        rank=1,
        certainty=_certainty(logprobs[0] if logprobs else None),
        weight=0.0,  # it adds no evidence of its own: it leads the winner's group
    )


def _clean(text: str, request: TaskRequest) -> str:
    """One model answer as a command line: extracted, and an unrequested `sudo` dropped."""
    command = extract_command(text)
    if DROP_UNREQUESTED_SUDO and request.task != "fix":
        command = drop_unrequested_sudo(command, request.text)
    return command


def _programs(command: str) -> tuple[str, ...]:
    """The programs of `command` in order (``find | xargs chmod`` -> find, xargs, chmod)."""
    from shellfish.eval.metric import command_structure

    return tuple(u for u, _f in command_structure(command))


def _command_key(command: str) -> str:
    """`command` with its whitespace collapsed: two lines that differ only there are one."""
    return " ".join(command.split())


def _certainty(mean_logprob: Any) -> float | None:
    if not isinstance(mean_logprob, (int, float)):
        return None
    return math.exp(min(0.0, float(mean_logprob)))


def _count_option(request: TaskRequest, key: str, default: int) -> int:
    value = request.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32:
        raise UsageError(f"option {key!r} must be a whole number from 0 to 32, not {value!r}")
    return value


def _generation_config(runner: Runner, request: TaskRequest, mode: str) -> GenerationConfig:
    overrides: dict[str, Any] = {
        "max_new_tokens": MAX_NEW_TOKENS,
        "stop": ("\n", "<|im_end|>", "```"),
    }
    if mode == "full":
        n = int(request.options.get("candidates") or 1)
        if n > 1:
            overrides.update(n=n, temperature=0.7, top_p=0.95)
    overrides.update(request.generation)
    config = runner.info.defaults.merged(**overrides)
    config.validate()
    return config


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    """The first of each distinct command line; a dropped duplicate's vote goes to it."""
    kept: dict[str, Candidate] = {}
    for c in candidates:
        key = _command_key(c.command)
        if key in kept:
            kept[key].weight += c.weight
        else:
            kept[key] = c
    return list(kept.values())


def rank_candidates(candidates: list[Candidate]) -> None:
    """Score and sort in place by a vote over programs, then fill in each `confidence`.

    Every candidate votes for its sequence of programs (``find | xargs chmod``) with its
    `weight`: the model's answer 1, a retrieved command by its BM25 score relative to the best
    hit (squared) over 1 + its rank. A candidate's score is the share of the vote its programs
    got, minus its validation penalty; within one group the model's answer comes first (it
    carries this request's own arguments), then retrieved commands by rank. Measured on NL2Bash
    dev (docs/quality.md), the vote beats both the model alone and the nearest neighbour alone:
    a 0.5B model and BM25 are wrong in different places.
    """
    groups = [_programs(c.command) for c in candidates]
    votes: dict[tuple[str, ...], float] = {}
    certainty: dict[tuple[str, ...], float] = {}  # of the group's first model answer
    for c, group in zip(candidates, groups, strict=True):
        votes[group] = votes.get(group, 0.0) + c.weight
        if c.source == "model" and c.certainty is not None:
            certainty.setdefault(group, c.certainty)
    total = sum(votes.values()) or 1.0
    for c, group in zip(candidates, groups, strict=True):
        share = votes[group] / total
        penalty = problem_penalty(c.problems)
        c.score = share + (0.01 if c.source == "model" else 0.0) - 0.001 * c.rank - penalty
        c.score -= 0.05 * len(c.warnings)
        cert = certainty.get(group)
        confidence = share if cert is None else (share + cert) / 2
        c.confidence = max(0.0, min(1.0, confidence * (0.5 if penalty else 1.0)))
    candidates.sort(key=lambda c: -c.score)


def request_similarity(request: str, example: str) -> float:
    """Jaccard overlap of the (stemmed, stop-word free) words of two requests."""
    from shellfish.knowledge.bm25 import tokenize

    a, b = set(tokenize(request)), set(tokenize(example))
    return len(a & b) / len(a | b) if a and b else 0.0


def problem_penalty(problems: list[str]) -> float:
    """How much the validation problems of a candidate count against it (vote shares are 0..1).

    A line that does not parse is wrong for everyone. A program missing here is weaker evidence
    (the user may install it), an undocumented flag weaker still (local docs are often
    incomplete): such a candidate loses to a clean one of similar support, not to a lone one.
    """
    penalty = 0.0
    for problem in problems:
        if "does not parse" in problem or "empty" in problem:
            penalty += 2.0
        elif "command not found" in problem:
            penalty += 0.3
        else:
            penalty += 0.05
    return min(penalty, 3.0)


_INDEX_CACHE: dict[str, tuple[float, KnowledgeIndex | None]] = {}


def _load_index(paths: Paths) -> KnowledgeIndex | None:
    """The knowledge index under paths.knowledge (cached per process, reloaded when rebuilt)."""
    from shellfish.knowledge.index import KnowledgeIndex, index_mtime

    root = paths.knowledge
    stamp = index_mtime(root)
    key = str(root)
    cached = _INDEX_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    index = KnowledgeIndex.load(root) if stamp else None
    _INDEX_CACHE[key] = (stamp, index)
    return index
