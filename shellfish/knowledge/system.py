"""What this computer has: the programs on PATH, their man pages and their `--help` text.

Man pages are read from disk (``<manpath>/man{1,8,6}/<name>.<section>[.gz]``) and flattened in
Python, which is ~100x faster than rendering each through ``man -P cat``; `--help` is only run
for programs without a man page, in a throwaway directory, with no stdin, a minimal
environment, a new session and a short timeout (a program whose `--help` hangs is killed with
its whole process group and skipped). Programs that must never be started, even with
`--help`, are on `NEVER_RUN`.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shellfish.knowledge.flags import Option, parse_options, roff_to_text
from shellfish.shell.grammar import INTERPRETERS

HELP_TIMEOUT_S = 2.0
MAN_MAX_BYTES = 2 * 1024 * 1024
HELP_MAX_BYTES = 256 * 1024
MAN_SECTIONS = ("1", "8", "6")
NEVER_RUN = (
    frozenset(
        [
            "reboot",
            "shutdown",
            "halt",
            "poweroff",
            "init",
            "telinit",
            "systemctl",
            "kexec",
            "rm",
            "rmdir",
            "dd",
            "mkfs",
            "shred",
            "wipefs",
            "fdisk",
            "sfdisk",
            "parted",
            "mkswap",
            "swapoff",
            "swapon",
            "kill",
            "killall",
            "pkill",
            "xkill",
            "logout",
            "su",
            "sudo",
            "login",
            "passwd",
            "chsh",
            "chfn",
            "useradd",
            "userdel",
            "usermod",
            "groupdel",
            "yes",
            "top",
            "htop",
            "less",
            "more",
            "vi",
            "vim",
            "view",
            "nano",
            "emacs",
            "ed",
            "ex",
        ]
    )
    | INTERPRETERS
)  # they would wait for code on stdin or run what --help means to them


@dataclass
class ProgramRecord:
    """One program on PATH and what we learned about its options."""

    name: str
    path: str
    mtime: float
    size: int
    man_path: str = ""
    man_mtime: float = 0.0
    source: str = ""  # man | help | none | timeout | error
    summary: str = ""
    options: list[list[str]] = field(default_factory=list)  # [[names...], description]

    def option_objects(self) -> list[Option]:
        return [Option(tuple(o[:-1]), o[-1]) for o in self.options]

    def flag_names(self) -> set[str]:
        return {n for o in self.options for n in o[:-1]}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgramRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def default_manpath(environ: dict[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    raw = env.get("MANPATH", "")
    dirs = [Path(p) for p in raw.split(":") if p]
    if not dirs or raw.startswith(":") or raw.endswith(":") or "::" in raw:
        dirs += [
            Path("/usr/local/share/man"),
            Path("/usr/share/man"),
            Path("/opt/homebrew/share/man"),
        ]
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def scan_path(path_value: str, limit: int | None = None) -> dict[str, Path]:
    """Executable files on PATH, first one wins (as the shell resolves them).

    `limit` stops the scan at that many names (a PATH with huge directories stays fast).
    """
    found: dict[str, Path] = {}
    for directory in path_value.split(os.pathsep):
        if not directory:
            continue
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if limit is not None and len(found) >= limit:
                return found
            if entry.name in found or entry.name.startswith("."):
                continue
            try:
                if entry.is_file() and os.access(entry.path, os.X_OK):
                    found[entry.name] = Path(entry.path)
            except OSError:
                continue
    return found


def find_man_page(name: str, manpath: Iterable[Path]) -> Path | None:
    for root in manpath:
        for section in MAN_SECTIONS:
            folder = root / f"man{section}"
            for suffix in (f".{section}.gz", f".{section}", f".{section}.bz2", f".{section}.xz"):
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def read_man_page(path: Path, manpath: Iterable[Path] = ()) -> str:
    """Plain text of a man page file (roff flattened); follows `.so` includes once.

    Raises OSError / ValueError / EOFError on unreadable or corrupt files (the caller skips
    the page).
    """
    raw = _read_compressed(path)
    first = raw.lstrip().splitlines()[0] if raw.strip() else ""
    if first.startswith(".so "):
        target = first[4:].strip()
        for root in [path.parent.parent, *manpath]:
            for cand in (root / target, root / (target + ".gz")):
                if cand.is_file():
                    raw = _read_compressed(cand)
                    break
    return roff_to_text(raw)


def _read_compressed(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAN_MAX_BYTES)
    elif path.suffix in (".bz2", ".xz"):
        import bz2
        import lzma

        opener = bz2.open if path.suffix == ".bz2" else lzma.open
        with opener(path, "rb") as fh:
            data = fh.read(MAN_MAX_BYTES)
    else:
        data = path.read_bytes()[:MAN_MAX_BYTES]
    return data.decode("utf-8", errors="replace")


def run_help(executable: Path, timeout_s: float = HELP_TIMEOUT_S) -> tuple[str, str]:
    """(`--help` output, status) with status ok | timeout | error | refused."""
    if executable.name in NEVER_RUN:
        return "", "refused"
    with tempfile.TemporaryDirectory(prefix="shellfish-help-") as tmp:
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C",
            "LC_ALL": "C",
            "HOME": tmp,
            "TERM": "dumb",
            "PAGER": "cat",
            "MANPAGER": "cat",
            "NO_COLOR": "1",
        }
        try:
            proc = subprocess.Popen(
                [str(executable), "--help"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=env,
                start_new_session=True,
            )
        except OSError:
            return "", "error"
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return "", "timeout"
    return out[:HELP_MAX_BYTES].decode("utf-8", errors="replace"), "ok"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=2)


def _summary_from(text: str) -> str:
    """The NAME line of a man page (`ls - list directory contents`) or the first help line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.upper() == "NAME" and i + 1 < len(lines):
            return " ".join(lines[i + 1].split())[:160]
    return lines[0][:160] if lines else ""


def describe_program(
    name: str,
    executable: Path,
    manpath: list[Path],
    *,
    run_help_text: bool = True,
    help_timeout_s: float = HELP_TIMEOUT_S,
) -> ProgramRecord:
    """Everything we index about one program. Never raises for a broken page or program."""
    st = executable.stat()
    record = ProgramRecord(name=name, path=str(executable), mtime=st.st_mtime, size=st.st_size)
    man = find_man_page(name, manpath)
    options: list[Option] = []
    if man is not None:
        record.man_path, record.man_mtime = str(man), man.stat().st_mtime
        try:
            text = read_man_page(man, manpath)
            options = parse_options(text)
            record.summary = _summary_from(text)
            record.source = "man"
        except (OSError, ValueError, EOFError, UnicodeError, IndexError):
            record.source = "error"  # a corrupt page: fall back to --help below
    if not options and run_help_text:
        text, status = run_help(executable, help_timeout_s)
        if status == "ok":
            options = parse_options(text)
            record.summary = record.summary or _summary_from(text)
            record.source = "help" if options else (record.source or "none")
        else:
            record.source = status
    record.options = [[*o.names, o.description] for o in options]
    return record


def refresh_programs(
    previous: dict[str, ProgramRecord],
    path_value: str,
    manpath: list[Path],
    *,
    run_help_text: bool = True,
    help_timeout_s: float = HELP_TIMEOUT_S,
    workers: int = 4,
) -> tuple[dict[str, ProgramRecord], dict[str, int]]:
    """Records for every program on PATH, re-reading only what changed since `previous`.

    A program is re-read when its binary's path, mtime or size changed, or its man page
    appeared, disappeared or changed. Returns (records, counts of kept/updated/removed).
    """
    programs = scan_path(path_value)
    out: dict[str, ProgramRecord] = {}
    todo: list[tuple[str, Path]] = []
    for name, exe in programs.items():
        old = previous.get(name)
        if old is not None and _unchanged(old, exe, manpath):
            out[name] = old
        else:
            todo.append((name, exe))

    def work(item: tuple[str, Path]) -> ProgramRecord | None:
        try:
            return describe_program(
                item[0],
                item[1],
                manpath,
                run_help_text=run_help_text,
                help_timeout_s=help_timeout_s,
            )
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rec in pool.map(work, todo):
            if rec is not None:
                out[rec.name] = rec
    counts = {
        "kept": len(programs) - len(todo),
        "updated": len(todo),
        "removed": len(set(previous) - set(programs)),
    }
    return out, counts


def _unchanged(old: ProgramRecord, exe: Path, manpath: list[Path]) -> bool:
    try:
        st = exe.stat()
    except OSError:
        return False
    if old.path != str(exe) or old.mtime != st.st_mtime or old.size != st.st_size:
        return False
    man = find_man_page(old.name, manpath)
    if man is None:
        return not old.man_path
    try:
        return str(man) == old.man_path and man.stat().st_mtime == old.man_mtime
    except OSError:
        return False
