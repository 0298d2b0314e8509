"""Checks on every suggestion before a user sees it; never runs the command.

`validate_command(cmd, shell)` answers four questions:
- does every program the line runs exist on this machine (`shutil.which`, shell builtins
  and keywords known; paths checked as files)?
- does the line parse (`zsh -n` / `bash -n`, when that shell is installed)?
- does every flag exist in the program's local documentation (`flag_problems`, given the
  knowledge index's `known_flags` as a `check`)? Programs we know no options for are not
  judged: no documentation is not evidence of a wrong flag.
- is it dangerous (`shellfish.shell.danger`)?

`check_candidates` runs them on a request's candidates and fills in their findings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shellfish.shell.danger import classify
from shellfish.shell.syntax import simple_commands

if TYPE_CHECKING:
    from shellfish.knowledge.index import KnowledgeIndex
    from shellfish.request import TaskRequest
    from shellfish.suggest.candidates import Candidate

Check = Callable[[str], list[str]]

# Builtins and reserved words of zsh and bash (union): never looked up on PATH.
_BUILTIN_WORDS = (
    ". : [ alias autoload bg bind bindkey break builtin caller case cd chdir command "
    "compgen complete compopt continue declare dirs disown echo emulate enable eval exec "
    "exit export false fc fg float getopts hash help history integer jobs kill let local "
    "logout mapfile popd print printf pushd pwd read readarray readonly rehash return "
    "select set setopt shift shopt source suspend test times trap true type typeset ulimit "
    "umask unalias unfunction unhash unset unsetopt wait whence where which zcompile zle "
    "zmodload zparseopts zstyle for foreach while until if case function repeat time "
    "noglob nocorrect "
)
BUILTINS = frozenset(_BUILTIN_WORDS.split())
# Flags every program is assumed to take.
ALWAYS_OK = frozenset({"--help", "--version", "-h"})

PARSE_TIMEOUT_S = 3.0
PARSE_MEMORY = 4096
_parsed: OrderedDict[tuple[str, str], str | None] = OrderedDict()
_parsed_lock = threading.Lock()


@dataclass
class Validation:
    ok: bool  # True when no problem was found (dangers alone do not make it False)
    problems: list[str] = field(default_factory=list)  # missing programs, parse errors, bad flags
    danger: list[str] = field(default_factory=list)  # one line per danger found

    @property
    def warnings(self) -> list[str]:
        """Everything a user should see next to the command: dangers first."""
        return [f"danger: {d}" for d in self.danger] + self.problems


def validate_command(
    cmd: str,
    shell: str = "zsh",
    *,
    checks: Sequence[Check] = (),
    which: Callable[[str], str | None] = shutil.which,
    cwd: str | None = None,
    home: str | None = None,
    parse: Callable[[str, str], str | None] | None = None,
) -> Validation:
    """Check one suggested command line (never run); `checks` add problem lines of their own.

    `cwd` and `home` are where the line would run and the user's $HOME: the danger check
    resolves paths against them (`rm -rf /home/me/*` from /home/me is `rm -rf ~/*`); programs
    given by a relative path are looked up from `cwd` when it exists here.
    """
    problems: list[str] = []
    if not cmd.strip():
        return Validation(ok=False, problems=["the command is empty"])
    here = cwd if cwd is not None and Path(cwd).is_dir() else None
    for word in missing_programs(cmd, which=which, cwd=here):
        problems.append(f"{word}: command not found on this machine")
    error = (parse or parse_error)(cmd, shell)
    if error:
        problems.append(f"does not parse in {shell}: {error}")
    for check in checks:
        problems.extend(check(cmd))
    return Validation(ok=not problems, problems=problems, danger=classify(cmd, cwd, home))


def check_candidates(
    candidates: list[Candidate], request: TaskRequest, index: KnowledgeIndex | None = None
) -> None:
    """Fill in `valid`, `problems`, `danger` and `warnings` of each candidate (in place)."""
    ctx = request.context or {}
    shell = str(ctx.get("shell") or "bash").rsplit("/", 1)[-1]
    cwd, home = _places(request)
    checks: list[Check] = []
    if index is not None:
        known = index.known_flags
        checks.append(lambda cmd: flag_problems(cmd, known))
    parsed = parse_errors([c.command for c in candidates if c.command.strip()], shell)
    for c in candidates:
        result = validate_command(
            c.command, shell, checks=checks, cwd=cwd, home=home, parse=lambda cmd, _: parsed[cmd]
        )
        c.valid = bool(result.ok)
        c.problems = list(result.problems)
        c.danger = list(result.danger)
        c.warnings = [f"danger: {d}" for d in result.danger]


def mark_dangers(candidates: list[Candidate], request: TaskRequest) -> None:
    """Fill in `danger` and `warnings` only (the modes without validation): whatever the mode,
    a dangerous command never reaches the user without its warning."""
    cwd, home = _places(request)
    for c in candidates:
        c.danger = classify(c.command, cwd, home)
        c.warnings = [f"danger: {d}" for d in c.danger]


def _places(request: TaskRequest) -> tuple[str | None, str]:
    """The request's cwd and the user's home, as the danger check reads them."""
    ctx = request.context or {}
    # the danger check needs no disk: the request's cwd counts even if it is not on this host
    cwd = str(ctx["cwd"]) if ctx.get("cwd") else None
    return cwd, str(ctx.get("home") or os.path.expanduser("~"))


def programs(cmd: str) -> list[str]:
    """The program word (as written, quotes removed) of each simple command in `cmd`, nested
    ones included (``$(...)``, ``xargs``, ``find -exec``, ``sh -c``), in order, once each."""
    return list(dict.fromkeys(c.program for c in simple_commands(cmd) if c.program))


def missing_programs(
    cmd: str, *, which: Callable[[str], str | None] = shutil.which, cwd: str | None = None
) -> list[str]:
    """Programs `cmd` runs that are neither builtins nor found on PATH / as a file."""
    missing = []
    for word in programs(cmd):
        if word in BUILTINS or any(c in word for c in "$`()<>{}*?") or word.startswith("-"):
            continue  # expansions and globs are resolved by the shell at run time
        if "/" in word:
            path = os.path.join(cwd or os.getcwd(), os.path.expanduser(word))
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                missing.append(word)
        elif which(word) is None:
            missing.append(word)
    return missing


def parse_error(cmd: str, shell: str = "zsh") -> str | None:
    """The shell's own complaint about `cmd` (`zsh -n`), or None when it parses.

    None as well when that shell is not installed (nothing to check against).
    """
    return parse_errors([cmd], shell)[cmd]


def parse_errors(cmds: Sequence[str], shell: str = "zsh") -> dict[str, str | None]:
    """`parse_error` of several lines: one `shell -n` each, all started at once, remembered.

    A suggestion checks about six candidates; one shell after another took ~13 ms of the
    checks' ~22 ms (`benchmarks/suggest_stages.py`), started together they overlap. Retrieved
    training commands come back request after request, so answers are kept (per shell binary,
    `PARSE_MEMORY` lines, the oldest forgotten first).
    """
    exe = shutil.which(shell)
    if exe is None:
        return dict.fromkeys(cmds)
    answers: dict[str, str | None] = {}
    todo: list[str] = []
    with _parsed_lock:
        for cmd in dict.fromkeys(cmds):
            key = (exe, cmd)
            if key in _parsed:
                _parsed.move_to_end(key)
                answers[cmd] = _parsed[key]
            else:
                todo.append(cmd)
    # bash takes long options only before short ones: `bash -n --norc` is an error.
    argv = [exe, "-n", "-f"] if shell == "zsh" else [exe, "--norc", "-n"]
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}
    started: list[tuple[str, subprocess.Popen[bytes] | None]] = []
    for cmd in todo:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError:
            started.append((cmd, None))
            continue
        started.append((cmd, process))
    deadline = time.monotonic() + PARSE_TIMEOUT_S
    for cmd, proc in started:
        answers[cmd] = _complaint(proc, cmd, exe, shell, deadline) if proc else None
    with _parsed_lock:
        for cmd, proc in started:
            if proc is not None and proc.returncode is not None and proc.returncode >= 0:
                _parsed[(exe, cmd)] = answers[cmd]  # a shell that was killed is not an answer
        while len(_parsed) > PARSE_MEMORY:
            _parsed.popitem(last=False)
    return answers


def _complaint(
    proc: subprocess.Popen[bytes], cmd: str, exe: str, shell: str, deadline: float
) -> str | None:
    """Feed `cmd` to a started `shell -n` and read its verdict (None: parses, or no answer)."""
    try:
        stderr = proc.communicate(
            cmd.encode("utf-8", "surrogateescape"), timeout=max(deadline - time.monotonic(), 0.01)
        )[1]
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
        return None
    if proc.returncode == 0:
        return None
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    message = lines[0] if lines else f"{shell} -n exited with status {proc.returncode}"
    # "zsh: parse error near `|'" / "bash: line 1: syntax error ..." -> drop the shell's prefix
    for prefix in (f"{exe}: ", f"{shell}: "):
        message = message.removeprefix(prefix)
    return message


def flag_problems(command: str, known: Callable[[str], set[str] | None]) -> list[str]:
    """One problem line per flag in `command` that its program does not document."""
    problems = []
    for simple in simple_commands(command):
        documented = known(simple.name) if simple.name else None
        if documented is None:
            continue
        problems += [
            f"{simple.name}: unknown flag {flag} (not in the local man page / --help)"
            for flag in sorted(simple.flag_names())
            if not _documented(flag, documented)
        ]
    return problems


def _documented(flag: str, documented: set[str]) -> bool:
    if flag in ALWAYS_OK or flag in documented or re.fullmatch(r"-\d+", flag):
        return True
    # GNU accepts unambiguous prefixes of long options
    return flag.startswith("--") and any(
        d.startswith(flag) for d in documented if d.startswith("--")
    )
