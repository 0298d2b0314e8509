"""Lexical view of a command line: simple commands, separators, and the program each runs.

Used by the danger checks and the validator. No shell is run; quoting follows POSIX `shlex`,
with a rough fallback when quotes are unbalanced.
"""

from __future__ import annotations

import re
import shlex

SEPARATORS = frozenset({"|", "||", "&&", ";", "&", "\n", "|&", ";;"})
# Prefixes that run the next word as the program.
WRAPPERS = frozenset(
    {
        "sudo",
        "doas",
        "env",
        "nice",
        "nohup",
        "time",
        "command",
        "exec",
        "builtin",
        "noglob",
        "ionice",
    }
)
# Programs that run whatever code they are given (piped into, or as an argument).
INTERPRETERS = frozenset(
    {"sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh"}
    | {"python", "python3", "perl", "ruby", "node"}
)
# Words that open or continue compound commands: the program is the word after them.
KEYWORDS = frozenset(
    {
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "while",
        "until",
        "!",
        "{",
        "}",
        "(",
        ")",
        "((",
        "))",
        "[[",
        "]]",
        "coproc",
    }
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_WRAPPER_ARGS = frozenset({"-u", "-g", "-n", "-c", "-C", "-p", "-D", "-h"})


def split_commands(line: str) -> list[tuple[list[str], str]]:
    """Split a line into simple commands, each with the separator that follows it."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace = " \t\r"
    lexer.wordchars += "$~*?[]{}=:,@%+^!#/.\\-"
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: fall back to a rough split
        tokens = re.findall(r"\|\||&&|[|;&\n]|[^\s|;&]+", line)
    out: list[tuple[list[str], str]] = []
    current: list[str] = []
    for tok in tokens:
        if tok in SEPARATORS:
            out.append((current, tok))
            current = []
        else:
            current.append(tok)
    out.append((current, ""))
    return [(words, sep) for words, sep in out if words]


def program_of(words: list[str]) -> tuple[str, list[str]]:
    """The program word a simple command runs (as written) and its arguments.

    Skips `VAR=value` assignments, wrappers such as `sudo -u bob` and compound-command
    keywords. Returns ("", []) for a command that only assigns.
    """
    i = 0
    while i < len(words):
        word = words[i]
        if word in KEYWORDS or _ASSIGNMENT.match(word):
            i += 1
            continue
        base = word.rsplit("/", 1)[-1]
        if base in WRAPPERS:
            i += 1
            while i < len(words) and words[i].startswith("-"):
                takes_arg = words[i] in _WRAPPER_ARGS and base in {"sudo", "doas", "nice", "ionice"}
                i += 2 if takes_arg else 1
            continue
        return word, words[i + 1 :]
    return "", []
