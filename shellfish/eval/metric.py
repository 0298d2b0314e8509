"""The NLC2CMD metric (NeurIPS 2020 competition) plus exact and template match.

The competition scores one prediction P against the reference C as follows (its
``metric_utils.compute_metric``): take the utilities (programs) of both commands in order,
pad the shorter list with nothing, and for each aligned pair (u, u*)

    S = conf * ( I[u == u*] * (1 + S_F) / 2  -  I[u != u*] )
    S_F = (2 |F ∩ F*| - |F ∪ F*|) / max(1, |F|, |F*|)      (1.0 when neither has flags)

where F, F* are the sets of flag names of u and u*; the command's score is the mean over the
pairs (0.0 for two empty commands). It lies in [-1, 1]: 1 for the right programs with the right
flags, -1 when every program is wrong. Arguments (file names, patterns) do not count. Over up
to k predictions, the competition takes the best score if any is positive, else the mean.

The competition parsed commands with the Tellina ``bashlint`` grammar; we do not ship that
parser. `command_structure` is a small tokenizer-based stand-in that extracts the same things
for ordinary command lines: one utility per simple command (pipelines, lists, ``$(...)``),
commands nested in ``xargs``, ``find -exec``, ``sudo`` and friends, and flag names (``-la`` ->
``-l -a`` except for single-dash-long-option programs such as ``find``; ``--x=y`` -> ``--x``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

OPERATORS = {"|", "||", "&&", ";", "&", "(", "|&", ";;", "{", "`"}
CLOSERS = {")", "}"}
REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", "&>>", ">|", "<>"}
KEYWORDS = {
    "if",
    "then",
    "else",
    "elif",
    "fi",
    "do",
    "done",
    "while",
    "until",
    "case",
    "esac",
    "!",
    "in",
}
# Programs that take a command as their argument (the nested command is a utility of its own).
WRAPPERS = {"sudo", "nohup", "time", "nice", "env", "exec", "command", "builtin"}
WRAPPER_VALUE_OPTS = {"-u", "-g", "-n", "-C", "-p"}
# xargs options that take a separate value.
XARGS_VALUE_OPTS = {"-I", "-i", "-n", "-P", "-L", "-l", "-d", "-s", "-E", "-e", "-a"}
EXEC_ACTIONS = {"-exec", "-execdir", "-ok", "-okdir"}
# Programs whose options are long names behind one dash (never split into letters).
SINGLE_DASH_LONG = {
    "find",
    "java",
    "gcc",
    "g++",
    "clang",
    "go",
    "ffmpeg",
    "convert",
    "mogrify",
    "xdotool",
    "openssl",
    "tcpdump",
    "iptables",
    "qemu-img",
    "dig",
    "mysql",
}
_SHORT_BUNDLE = re.compile(r"^-[A-Za-z]{2,}$")
_SHORT_WITH_VALUE = re.compile(r"^(-[A-Za-z])[0-9].*$")


def _tokens(command: str) -> list[str]:
    text = command.replace("$(", " ( ").replace("`", " ` ")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: fall back to plain words
        return text.split()


def _flag_names(utility: str, word: str) -> list[str]:
    if word in ("-", "--") or (
        re.fullmatch(r"-\d+(\.\d+)?", word) and utility not in ("head", "tail")
    ):
        return []
    if word.startswith("--"):
        return [word.split("=", 1)[0]]
    if utility in SINGLE_DASH_LONG:
        return [word]
    if _SHORT_BUNDLE.match(word):
        return [f"-{ch}" for ch in word[1:]]
    m = _SHORT_WITH_VALUE.match(word)
    if m:
        return [m.group(1)]
    return [word.split("=", 1)[0]]


@dataclass
class _Simple:
    utility: str
    flags: list[str]


def command_structure(command: str) -> list[tuple[str, frozenset[str]]]:
    """[(utility, flag names)] of every utility in `command`, in order of appearance."""
    out: list[_Simple] = []
    words = _tokens(command)
    i = 0
    expecting = True  # next word starts a new simple command
    current: _Simple | None = None
    end_of_options = False
    while i < len(words):
        w = words[i]
        if w in CLOSERS:  # the end of a group: what follows is still the outer command's
            expecting = False
            i += 1
            continue
        if w in OPERATORS:
            expecting, current, end_of_options = True, None, False
            i += 1
            continue
        if w.isdigit() and i + 1 < len(words) and words[i + 1] in REDIRECTS:
            i += 1  # a file descriptor number (`2>&1`)
            continue
        if w in REDIRECTS:  # the redirection and its target are not arguments
            i += 2
            continue
        if expecting:
            if w in KEYWORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
                i += 1
                continue
            current = _Simple(utility=w.rsplit("/", 1)[-1] if w.startswith("/") else w, flags=[])
            out.append(current)
            expecting, end_of_options = False, False
            i += 1
            if current.utility in WRAPPERS:
                # options of the wrapper, then the wrapped command
                while i < len(words) and (words[i].startswith("-") or "=" in words[i]):
                    if words[i].startswith("-"):
                        current.flags.extend(_flag_names(current.utility, words[i]))
                    i += 2 if words[i] in WRAPPER_VALUE_OPTS else 1
                expecting = True
            continue
        if current is None:  # e.g. words after `)` that closed the line's first group
            expecting = True
            continue
        if current.utility == "xargs" and not w.startswith("-"):
            expecting = True  # the rest is xargs' command
            continue
        if current.utility == "xargs" and w in XARGS_VALUE_OPTS:
            current.flags.append(w)
            i += 2
            continue
        if current.utility == "find" and w in EXEC_ACTIONS:
            current.flags.append(w)
            j = i + 1
            while j < len(words) and words[j] not in (";", "+", "\\;"):
                j += 1
            nested = command_structure(" ".join(shlex.quote(x) for x in words[i + 1 : j]))
            out.extend(_Simple(u, sorted(f)) for u, f in nested)
            i = j + 1
            continue
        if w == "--":
            end_of_options = True
        elif w.startswith("-") and len(w) > 1 and not end_of_options:
            current.flags.extend(_flag_names(current.utility, w))
        i += 1
    return [(s.utility, frozenset(s.flags)) for s in out]


def flag_score(flags: frozenset[str], truth_flags: frozenset[str]) -> float:
    if not flags and not truth_flags:
        return 1.0
    inter = len(flags & truth_flags)
    union = len(flags | truth_flags)
    return (2 * inter - union) / max(1, len(flags), len(truth_flags))


def nlc2cmd_score(predicted: str, truth: str, confidence: float = 1.0) -> float:
    """The NLC2CMD score of one prediction against one reference command, in [-1, 1]."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError("confidence must be in [0, 1]")
    pred = command_structure(predicted)
    gold = command_structure(truth)
    n = max(len(pred), len(gold))
    if n == 0:
        return 0.0
    total = 0.0
    for i in range(n):
        p = pred[i] if i < len(pred) else None
        g = gold[i] if i < len(gold) else None
        if p is not None and g is not None and p[0].lower() == g[0].lower():
            total += confidence * (1 + flag_score(p[1], g[1])) / 2
        else:
            total -= confidence
    return total / n


def aggregate_top_k(scores: Sequence[float]) -> float:
    """The competition's score over several predictions: best if any is positive, else mean."""
    if not scores:
        return -1.0
    if any(s > 0 for s in scores):
        return max(scores)
    return sum(scores) / len(scores)


def exact_match(predicted: str, truth: str) -> bool:
    """Equal after collapsing whitespace."""
    return " ".join(predicted.split()) == " ".join(truth.split())


def command_template(command: str) -> str:
    """The command with every argument replaced by ``_`` (utilities, flags, operators kept)."""
    words = _tokens(command)
    out: list[str] = []
    expecting = True
    utility = ""
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w in OPERATORS or w in CLOSERS:
            out.append(w)
            expecting = w in OPERATORS
            continue
        if w in REDIRECTS:
            out.append(w)
            if i < len(words):
                out.append("_")
                i += 1
            continue
        if w.isdigit() and i < len(words) and words[i] in REDIRECTS:
            out.append(w)
            continue
        if expecting:
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
                out.append("_=_")
                continue
            out.append(w)
            utility = w
            expecting = w in WRAPPERS or w in KEYWORDS
            continue
        if w.startswith("-") and len(w) > 1:
            out.append(w.split("=", 1)[0] + ("=_" if "=" in w else ""))
            if utility == "find" and w in EXEC_ACTIONS:
                expecting = True
            elif utility == "xargs" and w in XARGS_VALUE_OPTS and i < len(words):
                out.append("_")
                i += 1
        elif utility == "xargs":
            out.append(w)
            utility = w
        else:
            out.append("_")
    return " ".join(out)


def template_match(predicted: str, truth: str) -> bool:
    """Equal once arguments are normalised away (same programs, flags, structure)."""
    return command_template(predicted) == command_template(truth)
