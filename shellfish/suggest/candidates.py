"""Candidates: the commands that compete to answer one request.

A candidate is one command line with where it came from (the model's answer or a retrieved
neighbour), its vote weight and, once checked and ranked, its problems, dangers, score and
confidence. This module makes them: one command out of a model answer (`extract_command`), an
unrequested `sudo` dropped, and duplicates merged (`dedupe`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shellfish.request import TaskRequest

# Small models copy `sudo` from retrieved examples into answers that do not need it.
DROP_UNREQUESTED_SUDO = True
# Small models write the absolute cwd from the prompt for "here" / "the current directory"
# (`find /home/me/proj -name x`): a line that only works in this directory and leaks its path
# into history. Measured in docs/quality.md ("The current directory").
RELATIVE_CWD = True


@dataclass
class Candidate:
    command: str
    source: str  # "model" | "retrieved" | "rewrite" (a fix's mechanical correction)
    rank: int  # position within its source
    valid: bool = True
    problems: list[str] = field(default_factory=list)
    danger: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    score: float = 0.0
    similarity: float = 0.0  # of a retrieved example's words to the request (0..1)
    # model answers: exp(mean log-probability per token), the model's own certainty (0..1)
    certainty: float | None = None
    weight: float = 1.0  # its vote for its programs (see ranking.rank_candidates)
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
        line = _unwrap_line(raw)
        if line and not line.startswith("#"):
            return _strip_trailing_semicolons(line)
    return ""


def _unwrap_line(raw: str) -> str:
    """One line without its label (``Command:``), prompt (``$``) and backquotes."""
    line = raw.strip()
    if not line:
        return ""
    line = _LABEL_PREFIX.sub("", line)
    line = _PROMPT_PREFIX.sub("", line)
    if len(line) >= 2 and line[0] == line[-1] == "`":
        line = line.strip("`").strip()
    elif line.startswith("`") and "`" in line[1:]:
        line = line[1 : line.index("`", 1)].strip()
    return line


def _strip_trailing_semicolons(line: str) -> str:
    # A trailing `;` is noise, but `\;` ends a `find -exec` and must stay.
    line = line.strip()
    while line.endswith(";") and not line.endswith("\\;"):
        line = line[:-1].rstrip()
    return line


_PRIVILEGE_WORDS = re.compile(
    r"\b(sudo|root|superuser|admin\w*|privilege\w*|as another user)\b", re.I
)


def drop_unrequested_sudo(command: str, request_text: str) -> str:
    """`command` without a leading plain `sudo` unless the request asks for privileges."""
    if not command.startswith("sudo ") or _PRIVILEGE_WORDS.search(request_text):
        return command
    rest = command[len("sudo ") :].lstrip()
    if not rest or rest.startswith("-"):  # `sudo -u x ...`: an explicit choice, keep it
        return command
    return rest


def relative_to_cwd(command: str, cwd: str, request_text: str) -> str:
    """`command` with the absolute `cwd` written as ``.`` (``cwd/sub`` as ``./sub``).

    Unchanged when the request itself names that path (the user asked for it), and for a cwd
    of ``/`` or one that is not absolute (nothing to shorten). Only whole path components are
    replaced: ``/home/me/project2`` stays when the cwd is ``/home/me/project``.
    """
    cwd = cwd.rstrip("/")
    if not cwd.startswith("/") or cwd in request_text:
        return command
    # the cwd, then a path separator or the end of the word (space, quote, operator, end)
    pattern = re.compile(re.escape(cwd) + r"(?=/|$|[\s'\"`;|&)<>])")
    return pattern.sub(".", command)


def clean_answer(text: str, request: TaskRequest) -> str:
    """One model answer as a command line: extracted, an unrequested `sudo` dropped, and the
    absolute cwd written as ``.`` unless the request names it (`relative_to_cwd`)."""
    command = extract_command(text)
    if DROP_UNREQUESTED_SUDO and request.task != "fix":
        command = drop_unrequested_sudo(command, request.text)
    cwd = (request.context or {}).get("cwd")
    if RELATIVE_CWD and request.task != "fix" and isinstance(cwd, str) and cwd:
        command = relative_to_cwd(command, cwd, request.text)
    return command


def certainty(mean_logprob: Any) -> float | None:
    """exp(mean log-probability per token), or None when the runner gave none."""
    if not isinstance(mean_logprob, (int, float)):
        return None
    return math.exp(min(0.0, float(mean_logprob)))


def command_key(command: str) -> str:
    """`command` with its whitespace collapsed: two lines that differ only there are one."""
    return " ".join(command.split())


def dedupe(candidates: list[Candidate]) -> list[Candidate]:
    """The first of each distinct command line; a dropped duplicate's vote goes to it."""
    kept: dict[str, Candidate] = {}
    for c in candidates:
        key = command_key(c.command)
        if key in kept:
            kept[key].weight += c.weight
        else:
            kept[key] = c
    return list(kept.values())
