"""The shell context sent with a request: cwd, recent commands, git branch, OS, shell.

The zsh/bash hooks record recent commands in a per-session file (path in the exported
`SHELLFISH_CONTEXT_FILE`, 0600, under `<runtime dir>/context/`), already redacted by the
hook's pure-shell redaction. This module reads that file (bounded), redacts again with the
reference `shellfish.shell.redact`, and builds the dict that travels in `TaskRequest.context`:

    {"source": "zsh", "cwd": "...", "shell": "zsh 5.9", "os": "linux-gnu", "git_branch": "main",
     "recent": [{"cmd": "...", "cwd": "...", "exit": 0, "duration_ms": 12}, ...]}

File format (one record per line, fields separated by TAB; cwd and command escape `\\`,
newline and tab as `\\\\`, `\\n`, `\\t`):

    # shellfish context v1
    shell<TAB>zsh 5.9
    os<TAB>linux-gnu
    cmd<TAB>exit<TAB>duration_ms<TAB>epoch<TAB>cwd<TAB>command

Capture is off when `SHELLFISH_CONTEXT_CAPTURE` is 0/false/no/off, when settings say
`context.capture = false`, or when the `off` marker file exists in the context directory
(`shellfish context --off` writes both of the last two).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.shell.redact import redact

if TYPE_CHECKING:
    from shellfish.environment import Environment
    from shellfish.paths import Paths

CONTEXT_FILE_ENV = "SHELLFISH_CONTEXT_FILE"
CAPTURE_ENV = "SHELLFISH_CONTEXT_CAPTURE"
MAX_FILE_BYTES = 256 * 1024  # read at most this much (from the end) of a context file
MAX_FIELD_CHARS = 2000  # a longer recorded command is cut (and marked) before sending
_OFF_WORDS = {"0", "false", "no", "off"}


@dataclass
class RecentCommand:
    cmd: str
    exit: int
    duration_ms: int
    cwd: str
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cmd": self.cmd,
            "cwd": self.cwd,
            "exit": self.exit,
            "duration_ms": self.duration_ms,
        }


@dataclass
class SessionContext:
    shell: str = ""
    os: str = ""
    recent: list[RecentCommand] = field(default_factory=list)


def context_dir(paths: Paths) -> Path:
    return paths.runtime / "context"


def off_marker(paths: Paths) -> Path:
    return context_dir(paths) / "off"


def unescape(text: str) -> str:
    """Undo the hook's escaping: `\\\\` -> `\\`, `\\n` -> newline, `\\t` -> tab."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"\\": "\\", "n": "\n", "t": "\t"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + " [...]"


def parse_context(text: str, max_commands: int = 20) -> SessionContext:
    """Parse a context file's text; malformed lines are skipped, never fatal."""
    ctx = SessionContext()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if parts[0] == "shell" and len(parts) >= 2:
            ctx.shell = parts[1]
        elif parts[0] == "os" and len(parts) >= 2:
            ctx.os = parts[1]
        elif parts[0] == "cmd" and len(parts) >= 6:
            try:
                exit_status, duration, epoch = int(parts[1]), int(parts[2]), int(parts[3] or 0)
            except ValueError:
                continue
            command = "\t".join(parts[5:])  # an unescaped tab cannot split the command
            ctx.recent.append(
                RecentCommand(
                    cmd=_cut(redact(unescape(command))),
                    exit=exit_status,
                    duration_ms=duration,
                    cwd=_cut(unescape(parts[4])),
                    epoch=epoch,
                )
            )
    if max_commands >= 0:
        ctx.recent = ctx.recent[-max_commands:] if max_commands else []
    return ctx


def read_context_file(path: Path, max_commands: int = 20) -> SessionContext:
    """Read (at most MAX_FILE_BYTES from the end of) a session file; missing file: empty."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - MAX_FILE_BYTES))
            data = fh.read(MAX_FILE_BYTES)
    except OSError:
        return SessionContext()
    text = data.decode("utf-8", errors="replace")
    if size > MAX_FILE_BYTES:  # drop the partial first line
        text = text.partition("\n")[2]
    return parse_context(text, max_commands)


def git_branch(cwd: Path) -> str | None:
    """The branch checked out in the repository holding `cwd` (read from HEAD, no git run)."""
    for directory in (cwd, *cwd.parents):
        dotgit = directory / ".git"
        try:
            if dotgit.is_file():
                target = dotgit.read_text(encoding="utf-8", errors="replace").strip()
                gitdir = Path(target.removeprefix("gitdir:").strip())
                dotgit = gitdir if gitdir.is_absolute() else directory / gitdir
            elif not dotgit.is_dir():
                continue
            head = (dotgit / "HEAD").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        if head.startswith("ref: refs/heads/"):
            return head.removeprefix("ref: refs/heads/")
        return head[:12] or None
    return None


def capture_enabled(env: Environment) -> bool:
    """False when the user turned context capture off (env var, settings, or the marker file)."""
    if env.environ.get(CAPTURE_ENV, "1").strip().lower() in _OFF_WORDS:
        return False
    try:
        if not env.settings.context.capture:
            return False
    except (
        Exception
    ):  # a broken config file must not break the widget; the CLI reports it elsewhere
        pass
    return not off_marker(env.paths).exists()


def _max_commands(env: Environment) -> int:
    try:
        return int(env.settings.context.max_commands)
    except Exception:
        return 20


def build_context(
    session: SessionContext, *, cwd: str, shell: str = "", source: str = "cli"
) -> dict[str, Any]:
    """The redacted context dict for a request."""
    ctx: dict[str, Any] = {
        "source": source,
        "cwd": cwd,
        "shell": session.shell or shell,
        "os": session.os or f"{platform.system().lower()} {platform.release()}",
    }
    branch = git_branch(Path(cwd))
    if branch:
        ctx["git_branch"] = branch
    ctx["recent"] = [c.to_dict() for c in session.recent]
    return ctx


def current_context(env: Environment, *, shell: str = "") -> dict[str, Any] | None:
    """What a request from this process would carry as context; None when capture is off.

    Reads the session file named by SHELLFISH_CONTEXT_FILE (set by the shell hooks); without
    it (a plain `shellfish suggest` outside an integrated shell) only cwd/OS/shell are sent.
    """
    if not capture_enabled(env):
        return None
    path = env.environ.get(CONTEXT_FILE_ENV)
    session = read_context_file(Path(path), _max_commands(env)) if path else SessionContext()
    cwd = env.environ.get("PWD") or os.getcwd()
    try:
        if not Path(cwd).samefile(os.getcwd()):
            cwd = os.getcwd()
    except OSError:
        cwd = os.getcwd()
    if not shell:
        shell = Path(env.environ.get("SHELL", "")).name
    source = (
        "zsh"
        if session.shell.startswith("zsh")
        else "bash"
        if session.shell.startswith("bash")
        else "cli"
    )
    return build_context(session, cwd=cwd, shell=shell, source=source)


def sanitize_context(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """Redact a context that arrived from elsewhere (the daemon: fast-path requests)."""
    if context is None:
        return None
    from shellfish.shell.redact import redact_obj

    out = redact_obj(context)
    return out if isinstance(out, dict) else None
