"""Checks on every suggestion before a user sees it.

`validate_command(cmd, shell="zsh")` answers three questions:
- does every program the line runs exist on this machine (`shutil.which`, shell builtins
  and keywords known; paths checked as files)?
- does the line parse (`zsh -n` / `bash -n`, when that shell is installed)?
- is it dangerous (`shellfish.shell.danger`)?

Flag checks against local `--help` output belong to the knowledge index; it plugs in through
`checks`: callables taking the command line and returning problem lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shellfish.shell.danger import classify
from shellfish.shell.words import program_of, split_commands

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

PARSE_TIMEOUT_S = 3.0


@dataclass
class Validation:
    ok: bool  # True when no problem was found (dangers alone do not make it False)
    problems: list[str] = field(default_factory=list)  # missing programs, parse errors, bad flags
    danger: list[str] = field(default_factory=list)  # one line per danger found

    @property
    def warnings(self) -> list[str]:
        """Everything a user should see next to the command: dangers first."""
        return [f"danger: {d}" for d in self.danger] + self.problems


def programs(cmd: str) -> list[str]:
    """The program word of each simple command in `cmd`, in order, without duplicates."""
    seen: list[str] = []
    for words, _sep in split_commands(cmd):
        word, _args = program_of(words)
        if word and word not in seen:
            seen.append(word)
    return seen


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
    exe = shutil.which(shell)
    if exe is None:
        return None
    # bash takes long options only before short ones: `bash -n --norc` is an error.
    argv = [exe, "-n", "-f"] if shell == "zsh" else [exe, "--norc", "-n"]
    try:
        proc = subprocess.run(
            argv,
            input=cmd.encode("utf-8", "surrogateescape"),
            capture_output=True,
            timeout=PARSE_TIMEOUT_S,
            check=False,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode == 0:
        return None
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    message = lines[0] if lines else f"{shell} -n exited with status {proc.returncode}"
    # "zsh: parse error near `|'" / "bash: line 1: syntax error ..." -> drop the shell's prefix
    for prefix in (f"{exe}: ", f"{shell}: "):
        message = message.removeprefix(prefix)
    return message


def validate_command(
    cmd: str,
    shell: str = "zsh",
    *,
    checks: Sequence[Check] = (),
    which: Callable[[str], str | None] = shutil.which,
    cwd: str | None = None,
    home: str | None = None,
) -> Validation:
    """Check one suggested command line; never runs it.

    `cwd` and `home` are where the line would run and the user's $HOME: the danger check
    resolves paths against them (`rm -rf /home/me/*` from /home/me is `rm -rf ~/*`).
    """
    problems: list[str] = []
    if not cmd.strip():
        return Validation(ok=False, problems=["the command is empty"])
    for word in missing_programs(cmd, which=which, cwd=cwd):
        problems.append(f"{word}: command not found on this machine")
    error = parse_error(cmd, shell)
    if error:
        problems.append(f"does not parse in {shell}: {error}")
    for check in checks:
        problems.extend(check(cmd))
    return Validation(ok=not problems, problems=problems, danger=classify(cmd, cwd, home))
