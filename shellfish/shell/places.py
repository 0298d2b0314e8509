"""Where a path word of a command line points, and what kind of place that is.

`resolve(word, cwd, home)` turns a shell word (`~/x`, `$HOME/..`, `${HOME:?}/`, `/./usr//`,
`../*`, `$(pwd)`) into normalised absolute paths, lexically: the disk is never touched, so
symlinks are not followed and globs are kept as patterns. Brace expansion gives one path
per alternative. When the request's cwd or `$HOME` is unknown, paths stay anchored at a
symbolic `.` or `~` so `rm -rf .` is still "the current directory".

`protected(path)` says whether a resolved path is a place whose loss is a disaster: `/`, the
home directory and its parents, the current directory and its parents, system directories,
other users' homes, `~/.ssh` and friends. A trailing glob that matches everything (`*`, `.*`,
`.[!.]*`) stands for the contents of its directory, so `/home/me/*` is judged like `$HOME`.

The danger check (`shellfish.shell.danger`) asks these two functions for every path operand;
they know nothing of programs.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

Anchor = Literal["/", "~", "."]
Kind = Literal["root", "system", "home", "cwd"]

# Directories whose recursive loss breaks the machine, as paths from `/` ("*": any name).
SYSTEM_DIRS: tuple[tuple[str, ...], ...] = tuple(
    tuple(p.strip("/").split("/"))
    for p in str.split(
        "/bin /boot /dev /etc /home /lib /lib32 /lib64 /libx32 /media /mnt /opt /proc /root "
        "/run /sbin /snap /srv /sys /usr /var /nix /Users /System /Library /Applications "
        "/Volumes /private /cores /usr/bin /usr/sbin /usr/lib /usr/lib32 /usr/lib64 "
        "/usr/libexec /usr/include /usr/share /usr/local /usr/src /usr/local/bin "
        "/usr/local/lib /usr/local/share /usr/local/etc /var/lib /var/log /var/spool /var/mail "
        "/var/backups /private/etc /private/var /System/Library "
        "/Library/Preferences /nix/store /boot/efi /etc/ssh /etc/ssl /etc/pam.d "
        "/etc/systemd /etc/apt /etc/default /etc/security /etc/sudoers.d"
    )
)
# Homes of any user: a recursive delete there is as bad as one of $HOME.
HOME_DIRS: tuple[tuple[str, ...], ...] = (("home", "*"), ("Users", "*"), ("root",))
# Inside a home: keys, credentials and every program's settings (~/Library on macOS).
HOME_CRITICAL = frozenset(
    {".ssh", ".gnupg", ".config", ".local", ".password-store", ".kube", ".aws", "Library"}
)
# Block devices: writing to one destroys the filesystem on it.
_DEVICE = re.compile(
    r"^(?:sd[a-z]+|hd[a-z]+|vd[a-z]+|xvd[a-z]+|nvme\d+(?:n\d+)?(?:p\d+)?|mmcblk\d+(?:p\d+)?"
    r"|disk\d+(?:s\d+)?|rdisk\d+(?:s\d+)?|md\d+|dm-\d+|loop\d+|sr\d+|fd\d+|sd[a-z]+\d+"
    r"|root|mapper|disk|mtdblock\d+|ram\d+|nbd\d+|zd\d+)"
)
_GLOB_CHARS = frozenset("*?[")
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?=+][^}]*)?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
# `$(dirname "$PWD")`, `$(dirname $(pwd))`: the parent of the cwd.
_PARENT_SUBST = re.compile(
    r"\$\(\s*dirname\s+[\"']?(?:\$\(\s*pwd\s*\)|\$PWD|\$\{PWD\}|`pwd`)[\"']?\s*\)"
)
_PWD_SUBST = re.compile(r"\$\(\s*pwd(?:\s+-[LP])?\s*\)|`\s*pwd(?:\s+-[LP])?\s*`")
# How many readings of one word are judged at most (brace alternatives, variable values).
MAX_READINGS = 64
# Stands for a variable we cannot know: it matches no real name.
_UNKNOWN = "\x00"


@dataclass(frozen=True)
class Path:
    """A resolved path: `anchor` then normalised components (globs kept as written).

    anchor "/" is absolute; "~" and "." stand for an unknown home / cwd, and a leading ".."
    in `parts` then climbs above it. `maybe_empty` marks the reading of a word in which
    unknown variables expanded to nothing (`$DIR/` read as `/`).
    """

    anchor: Anchor
    parts: tuple[str, ...]
    maybe_empty: bool = False

    def __str__(self) -> str:
        parts = [p.replace(_UNKNOWN, "$?") for p in self.parts]
        if self.anchor == "/":
            return "/" + "/".join(parts)
        return "/".join([self.anchor, *parts])

    @property
    def has_glob(self) -> bool:
        return any(_is_glob(p) for p in self.parts)


@dataclass(frozen=True)
class Verdict:
    """Why a path is protected: its kind and a phrase for the user."""

    kind: Kind
    label: str


def _is_glob(part: str) -> bool:
    return any(c in _GLOB_CHARS for c in part)


def matches_everything(part: str) -> bool:
    """A glob component that lists a whole directory: `*`, `.*`, `.??*`, `.[!.]*`, `*.*`."""
    if "*" not in part:
        return False
    without_classes = re.sub(r"\[[!^]?[^]]*\]", "?", part)
    return set(without_classes) <= set("*?.")


def _split_parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def expand_braces(word: str, limit: int = MAX_READINGS) -> list[str]:
    """Shell brace expansion of `a{b,c}d` (nested braces too); ranges `{1..3}` stay as written.

    At most `limit` words come back (the first ones): `{a,b}` repeated 30 times must not
    take 2**30 steps.
    """
    depth = 0
    start = -1
    for i, c in enumerate(word):
        if c == "{" and (i == 0 or word[i - 1] != "$"):
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                inner = word[start + 1 : i]
                alternatives = _split_top_commas(inner)
                if len(alternatives) < 2:
                    rest = expand_braces(word[i + 1 :], limit)
                    return [word[: i + 1] + r for r in rest]
                out: list[str] = []
                for alt in alternatives:
                    if len(out) >= limit:
                        break
                    out.extend(expand_braces(word[:start] + alt + word[i + 1 :], limit - len(out)))
                return out[:limit]
    return [word]


def _split_top_commas(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for c in text:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += c
    parts.append(current)
    return parts


def _substitute(word: str, cwd: str | None, home: str | None, empty: bool) -> str:
    """`word` with `$HOME`, `$PWD`, `$(pwd)` replaced; other variables become `_UNKNOWN`
    (or nothing when `empty`; `${X:?}` never reads as empty: the shell stops instead)."""
    home_text = home if home is not None else "~"
    cwd_text = cwd if cwd is not None else "."
    word = _PARENT_SUBST.sub(lambda _m: cwd_text + "/..", word)
    word = _PWD_SUBST.sub(lambda _m: cwd_text, word)

    def one(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        op = m.group("op") or ""
        if name == "HOME":
            return home_text
        if name == "PWD":
            return cwd_text
        if op[:2] in {":-", ":="} or op[:1] in {"-", "="}:
            default = op[2:] if op.startswith(":") else op[1:]
            return default if empty else _UNKNOWN
        if op[:2] == ":?" or op[:1] == "?":
            # ${X:?} aborts the command when X is empty: no empty reading
            return _UNKNOWN
        if op[:2] == ":+" or op[:1] == "+":
            return "" if empty else _UNKNOWN
        return "" if empty else _UNKNOWN

    return _VAR.sub(one, word)


def resolve(word: str, cwd: str | None = None, home: str | None = None) -> list[Path]:
    """Every path `word` may name, normalised, without touching the disk.

    Brace alternatives each give a path; a word with unknown variables also gives the
    reading with those variables empty (marked `maybe_empty`), because that is what runs
    when the variable is unset. A word that is empty after expansion names no path.
    """
    word = word.strip()
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        word = word[1:-1]
    word = word.replace('"', "").replace("'", "")
    out: list[Path] = []
    for alt in expand_braces(word):
        readings = [(alt, False)]
        if _VAR.search(alt) and _has_unknown_variable(alt):
            readings.append((alt, True))
        for text, empty in readings:
            expanded = _substitute(text, cwd, home, empty)
            if not expanded:
                continue
            path = _normalise(expanded, cwd, home)
            if path is not None:
                out.append(Path(path.anchor, path.parts, maybe_empty=empty))
    return out


def _has_unknown_variable(word: str) -> bool:
    for m in _VAR.finditer(word):
        name = m.group("braced") or m.group("plain")
        op = m.group("op") or ""
        if name not in {"HOME", "PWD"} and not (op.startswith(":?") or op.startswith("?")):
            return True
    return False


def _normalise(text: str, cwd: str | None, home: str | None) -> Path | None:
    anchor: Anchor
    if text.startswith("~+") and text[2:3] in {"", "/"}:  # ~+ is $PWD
        text = (cwd if cwd is not None else ".") + "/" + text[2:]
    if text.startswith("~"):
        head, _, rest = text[1:].partition("/")
        if head == "-":  # ~- is $OLDPWD: unknown
            anchor, parts = "/", [_UNKNOWN]
        elif head:  # ~user: another user's home
            if home is not None and posixpath.dirname(home.rstrip("/")):
                base = posixpath.join(posixpath.dirname(home.rstrip("/")), head)
            else:
                base = "/home/" + head
            anchor, parts = "/", _split_parts(base)
        elif home is not None:
            anchor, parts = "/", _split_parts(home)
        else:
            anchor, parts = "~", []
        text = rest
    elif text.startswith("/"):
        anchor, parts = "/", []
    elif cwd is not None:
        anchor, parts = "/", _split_parts(cwd)
    else:
        anchor, parts = ".", []
    for part in _split_parts(text):
        if part == ".":
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif anchor != "/":
                parts.append("..")
            continue
        parts.append(part)
    return Path(anchor, tuple(parts))


def is_device(path: Path) -> bool:
    """A block device under /dev (disks, partitions, md/dm/loop devices), not /dev/null."""
    return (
        path.anchor == "/"
        and len(path.parts) >= 2
        and path.parts[0] == "dev"
        and bool(_DEVICE.match(path.parts[1]))
    )


def _component_match(pattern: str, name: str) -> bool:
    """Does the shell glob component `pattern` (or literal) match the name `name`?

    `name` "*" stands for any user's home directory name.
    """
    if _UNKNOWN in pattern:
        return False
    if name == "*":
        return not pattern.startswith(".") or pattern in {".*"}
    if pattern == name:
        return True
    if not _is_glob(pattern):
        return False
    if name.startswith(".") and not pattern.startswith("."):
        return False  # the shell's `*` skips dotfiles
    return fnmatchcase(name, pattern)


def _same(parts: tuple[str, ...], template: tuple[str, ...]) -> bool:
    return len(parts) == len(template) and all(
        _component_match(p, t) for p, t in zip(parts, template, strict=True)
    )


def _ancestors(parts: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [parts[:i] for i in range(len(parts))]


def _judge_place(
    path: Path, cwd: tuple[str, ...] | None, home: tuple[str, ...] | None
) -> Verdict | None:
    """Is `path` itself (not its contents) a protected place?"""
    parts = path.parts
    if path.anchor == "~":
        if not parts:
            return Verdict("home", "your home directory")
        if all(p == ".." for p in parts):
            return Verdict("home", f"a parent of your home directory ({path})")
        if len(parts) == 1 and parts[0] in HOME_CRITICAL:
            return Verdict("home", str(path))
        return None
    if path.anchor == ".":
        if not parts:
            return Verdict("cwd", "the current directory")
        if all(p == ".." for p in parts):
            return Verdict("cwd", f"a parent of the current directory ({path})")
        return None
    if not parts:
        return Verdict("root", "/")
    if home is not None:
        if _same(parts, home):
            return Verdict("home", f"your home directory ({path})")
        if any(_same(parts, a) for a in _ancestors(home)):
            return Verdict("home", f"a parent of your home directory ({path})")
        if len(parts) == len(home) + 1 and _same(parts[:-1], home) and parts[-1] in HOME_CRITICAL:
            return Verdict("home", str(path))
    if any(_same(parts, t) for t in SYSTEM_DIRS):
        return Verdict("system", f"the system directory {path}")
    if any(_same(parts, t) for t in HOME_DIRS):
        return Verdict("home", f"the home directory {path}")
    if any(_same(parts[:-1], t) for t in HOME_DIRS) and parts[-1] in HOME_CRITICAL:
        return Verdict("home", str(path))
    # last: a cwd that is also / or a system directory or a home is judged as that
    if cwd is not None:
        if _same(parts, cwd):
            return Verdict("cwd", f"the current directory ({path})")
        if any(_same(parts, a) for a in _ancestors(cwd)):
            return Verdict("cwd", f"a parent of the current directory ({path})")
    return None


def protected(
    path: Path, cwd: str | None = None, home: str | None = None, *, contents: bool = True
) -> Verdict | None:
    """Why losing `path` (a `resolve` result) would be a disaster, or None when it would not.

    With `contents`, a last component that globs a whole directory (`dir/*`, `dir/.*`) is
    judged as `dir` itself. A `maybe_empty` reading counts only when it lands on `/`, a
    home or a system directory: `$DIR/build` read as `/build` names nothing.
    """
    cwd_parts = tuple(_split_parts(cwd)) if cwd else None
    home_parts = tuple(_split_parts(home)) if home else None
    verdict = None
    if contents and path.parts and matches_everything(path.parts[-1]):
        parent = Path(path.anchor, path.parts[:-1], path.maybe_empty)
        inner = _judge_place(parent, cwd_parts, home_parts)
        if inner is not None:
            verdict = Verdict(inner.kind, f"everything in {inner.label}")
    if verdict is None:
        verdict = _judge_place(path, cwd_parts, home_parts)
    if verdict is not None and path.maybe_empty:
        if verdict.kind == "cwd":
            return None
        return Verdict(verdict.kind, f"{verdict.label}, if a variable in it is empty")
    return verdict
