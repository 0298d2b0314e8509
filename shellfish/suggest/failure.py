"""What is known about a command that failed, for the fix key - without running anything.

The fix widget sends the failed command line, its exit status (`last_exit_status` in the
request context) and the shell's PATH (`path`). shellfish does **not** capture what the command
printed: that would mean routing every command's stderr through a pipe (programs then see no
terminal: colours, progress bars and password prompts break) or running the command again
(never: commands have side effects). What this module works out instead, from the line and the
machine as they are now:

- what the exit status means when it is unambiguous (126: not executable, 127: command not
  found, 128+n: killed by signal n); other statuses mean whatever the program says they mean;
- which programs of the line are not installed, and the installed programs whose names are
  nearest to them (Damerau-Levenshtein distance over the executables on PATH);
- which file arguments do not exist, and the nearest names in their directory.

`describe` turns that into lines for the model's prompt; `rewrites` gives the corrected lines
that follow from it mechanically (the nearest program or file name put in place of the wrong
one), which join the model's answer as fix candidates.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shellfish.shell.syntax import parse
from shellfish.suggest.checks import BUILTINS

MAX_NEAREST = 3
# Names to compare against: bounded, so a PATH with huge directories stays fast.
MAX_PATH_NAMES = 20_000
MAX_DIR_NAMES = 2_000
_GLOB_OR_EXPANSION = set("$`*?[]{}()<>|;&~")


@dataclass
class Failure:
    """The facts about one failed command line (see the module docstring)."""

    command: str
    exit_status: int | None = None
    meaning: str = ""  # what the exit status means, when it is unambiguous
    missing_programs: dict[str, list[str]] = field(default_factory=dict)  # word -> nearest
    missing_files: dict[str, list[str]] = field(default_factory=dict)  # arg -> nearest names
    not_executable: list[str] = field(default_factory=list)  # program files without +x
    interpreters: dict[str, str] = field(default_factory=dict)  # such a file -> its #! program
    unreadable: list[str] = field(default_factory=list)  # file arguments this user cannot read
    error_output: str = ""  # only when a client captured it (`last_stderr`): the shells do not

    def describe(self) -> list[str]:
        """Sentences for the prompt, most useful first."""
        lines: list[str] = []
        if self.exit_status is not None:
            status = f"Exit status: {self.exit_status}"
            lines.append(f"{status} ({self.meaning})." if self.meaning else f"{status}.")
        if self.error_output:
            lines.append(f"Error output: {self.error_output[-400:]}")
        for word, near in self.missing_programs.items():
            line = f"`{word}`: command not found."
            if near:
                line += " Installed programs with similar names: " + ", ".join(near) + "."
            lines.append(line)
        for arg, near in self.missing_files.items():
            line = f"`{arg}` does not exist."
            if near:
                line += " Similar names there: " + ", ".join(near) + "."
            lines.append(line)
        for word in self.not_executable:
            lines.append(f"`{word}` exists but is not executable.")
        for arg in self.unreadable:
            lines.append(f"`{arg}` exists but this user may not read it.")
        return lines


def exit_meaning(status: int) -> str:
    """What a shell exit status means when that is the same for every program, else ""."""
    if status == 126:
        return "found but not executable: permission denied or not a program"
    if status == 127:
        return "command not found"
    if 128 < status < 128 + 65:
        try:
            name = signal.Signals(status - 128).name
        except ValueError:
            name = f"signal {status - 128}"
        return f"killed by {name}" + (" (Ctrl+C)" if name == "SIGINT" else "")
    return ""


def distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment): `gti` -> `git` is 1."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def nearest(word: str, names: Any, limit: int = MAX_NEAREST) -> list[str]:
    """The names closest to `word`: at most 1 edit for words up to 4 letters, 2 beyond.

    Ties go to an anagram of the word (`sl` -> `ls` before `sh`), then to a name with the same
    first letter, then to the shorter name: typing errors swap and slip more than they invent.
    """
    if not word:
        return []
    budget = 1 if len(word) <= 4 else 2
    scored = []
    for name in set(names):
        if name == word or abs(len(name) - len(word)) > budget:
            continue
        d = distance(word, name)
        if d <= budget:
            anagram = sorted(name) == sorted(word)
            scored.append((d, not anagram, name[:1] != word[:1], len(name), name))
    return [s[-1] for s in sorted(scored)[:limit]]


_PROGRAMS_CACHE: dict[str, tuple[tuple[float, ...], frozenset[str]]] = {}


def path_programs(path: str) -> frozenset[str]:
    """The executable names on `path` (a PATH string), bounded by MAX_PATH_NAMES.

    Cached per PATH until one of its directories changes (a fix request asks twice: for the
    prompt and for the candidates; the daemon serves many)."""
    stamps = []
    for directory in path.split(os.pathsep):
        if not directory:
            continue
        try:
            stamps.append(os.stat(directory).st_mtime)
        except OSError:
            stamps.append(0.0)
    cached = _PROGRAMS_CACHE.get(path)
    if cached is not None and cached[0] == tuple(stamps):
        return cached[1]
    from shellfish.knowledge.system import scan_path

    names = frozenset(scan_path(path, MAX_PATH_NAMES))
    _PROGRAMS_CACHE[path] = (tuple(stamps), names)
    return names


def _which(word: str, path: str) -> bool:
    from shutil import which

    return which(word, path=path) is not None


def _file_args(args: list[str]) -> list[str]:
    """Arguments that name a file: not options, no expansions, with a `/` or a `.` in them."""
    out = []
    for arg in args:
        if arg.startswith("-") or _GLOB_OR_EXPANSION & set(arg) or "=" in arg:
            continue
        if "/" in arg or "." in arg.strip("."):
            out.append(arg)
    return out


def _near_files(arg: str, cwd: Path) -> list[str]:
    path = Path(os.path.expanduser(arg))
    path = path if path.is_absolute() else cwd / path
    parent = path.parent
    try:
        with os.scandir(parent) as entries:
            names = [e.name for _, e in zip(range(MAX_DIR_NAMES), entries, strict=False)]
    except OSError:
        return []
    prefix = arg[: len(arg) - len(path.name)]  # keep the directory part the user typed
    return [prefix + n for n in nearest(path.name, names)]


def analyse(command: str, context: Mapping[str, Any] | None) -> Failure:
    """The facts about `command` that failed, from the request context (see module doc)."""
    ctx = context or {}
    status = ctx.get("last_exit_status", ctx.get("exit_status"))
    try:
        exit_status = int(status) if status is not None else None
    except (TypeError, ValueError):
        exit_status = None
    failure = Failure(command=command, exit_status=exit_status)
    failure.error_output = str(ctx.get("last_stderr") or "").strip()
    if exit_status is not None:
        failure.meaning = exit_meaning(exit_status)
    path = str(ctx.get("path") or os.environ.get("PATH", ""))
    cwd = Path(str(ctx.get("cwd") or os.getcwd()))
    programs: frozenset[str] | None = None
    for simple in parse(command).walk():
        word = simple.program
        # operands and option values (`tar -xf archiv.tar`: the value of -f) may name files
        args = [*simple.operands, *(f.value for f in simple.flags if f.value)]
        if word and word not in BUILTINS and not _GLOB_OR_EXPANSION & set(word):
            if "/" in word:
                _check_program_file(failure, word, cwd)
            elif not _which(word, path) and word not in failure.missing_programs:
                if programs is None:
                    programs = path_programs(path) | BUILTINS
                failure.missing_programs[word] = nearest(word, programs)
        if not cwd.is_dir():
            continue  # the request came from elsewhere: its files are not ours to judge
        for arg in _file_args(args):
            target = _resolve(arg, cwd)
            if not target.exists() and not target.is_symlink():
                failure.missing_files[arg] = _near_files(arg, cwd)
            elif target.is_file() and not os.access(target, os.R_OK):
                failure.unreadable.append(arg)
    return failure


def _resolve(arg: str, cwd: Path) -> Path:
    target = Path(os.path.expanduser(arg))
    return target if target.is_absolute() else cwd / target


def _check_program_file(failure: Failure, word: str, cwd: Path) -> None:
    """A program given as a path: note it when it exists but cannot be run (status 126)."""
    target = _resolve(word, cwd)
    if not target.is_file() or os.access(target, os.X_OK):
        return
    failure.not_executable.append(word)
    try:
        with open(target, "rb") as fh:
            first = fh.readline(200).decode("utf-8", "replace")
    except OSError:
        return
    if first.startswith("#!"):
        parts = first[2:].split()
        if parts and parts[0].rsplit("/", 1)[-1] == "env" and len(parts) > 1:
            parts = parts[1:]
        if parts:
            failure.interpreters[word] = parts[0].rsplit("/", 1)[-1]


def rewrites(failure: Failure) -> list[str]:
    """Corrected lines that follow mechanically: each nearest name in place of the wrong one.

    A word is replaced where it stands as a whole word of the line (quoted if it needs it), so
    `gti status` becomes `git status`; the best correction for each problem comes first.
    """
    out: list[str] = []
    for word in failure.not_executable:
        interpreter = failure.interpreters.get(word)
        if interpreter:
            out.append(_replace_word(failure.command, word, f"{interpreter} {word}", quote=False))
    if failure.unreadable and not failure.command.startswith("sudo "):
        out.append("sudo " + failure.command)
    fixes = [(w, near) for w, near in failure.missing_programs.items() if near]
    fixes += [(a, near) for a, near in failure.missing_files.items() if near]
    if not fixes:
        return [line for line in dict.fromkeys(out) if line != failure.command]
    # All problems fixed with their nearest names, then each alternative for the first problem.
    best = failure.command
    for wrong, near in fixes:
        best = _replace_word(best, wrong, near[0])
    out.append(best)
    wrong, near = fixes[0]
    for alternative in near[1:]:
        out.append(_replace_word(failure.command, wrong, alternative))
    return [line for line in dict.fromkeys(out) if line != failure.command]


def _replace_word(line: str, old: str, new: str, *, quote: bool = True) -> str:
    """`line` with the whitespace-separated word `old` (as typed) replaced by `new`."""
    words = line.split(" ")
    quoted = shlex.quote(new) if quote else new
    return " ".join(quoted if w == old else w for w in words)
