"""Danger classification of a command line.

`dangers(line)` names what a command could destroy: recursive deletes of broad paths,
writes to block devices, piping a download into a shell, recursive permission changes on
system trees, fork bombs, dotfile overwrites, shutdowns, force pushes to main. The result is
shown to the user next to the suggestion; shellfish never runs a suggestion itself.

The checks are deliberately lexical (no shell is run): they look at each simple command of a
line after stripping `sudo`/`env`/`VAR=x` prefixes, so `sudo rm -rf /` and
`cd x && rm -rf ~` are both caught.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shellfish.shell.words import INTERPRETERS, program_of, split_commands


@dataclass(frozen=True)
class Danger:
    code: str  # stable identifier: rm-broad, device-write, pipe-to-shell, ...
    message: str  # one line for the user


_DOWNLOADERS = {"curl", "wget", "fetch", "http", "https", "aria2c"}
_SYSTEM_DIRS = {
    "/",
    "/*",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/opt",
    "/proc",
    "/root",
    "/sbin",
    "/srv",
    "/sys",
    "/usr",
    "/var",
    "/Users",
    "/System",
    "/Library",
    "/Applications",
}
_HOME_TARGETS = {
    "~",
    "~/",
    "~/*",
    "$HOME",
    "$HOME/",
    "$HOME/*",
    "${HOME}",
    "${HOME}/",
    "${HOME}/*",
    "*",
    ".",
    "./",
    "..",
    "../",
    "./*",
    ".*",
}
_DOTFILES = re.compile(
    r"^(?:~|\$HOME|\$\{HOME\})/\.(?:bashrc|bash_profile|bash_login|profile|zshrc|zshenv|zprofile|zlogin"
    r"|inputrc|vimrc|gitconfig|ssh/authorized_keys|ssh/config|ssh/id_[a-z0-9]+)$"
)
_FORK_BOMB = re.compile(r"([\w:.]+)\s*\(\)\s*\{[^}]*\1\s*\|\s*&?\s*\1\s*&[^}]*\}\s*;?\s*\1")
_SHELL_OF_DOWNLOAD = re.compile(r"\b(?:ba|z|da|k)?sh\b[^|;&\n]*(?:<\(|\$\(|`)\s*(?:curl|wget)\b")
_DEVICE = re.compile(
    r"^/dev/(?:sd[a-z]|nvme\d|hd[a-z]|vd[a-z]|xvd[a-z]|mmcblk\d|disk\d|rdisk\d|md\d|dm-\d|mapper/)"
)


def _flags(args: list[str]) -> set[str]:
    """Short flags split into letters (-rf -> r, f) plus long flags as given."""
    out: set[str] = set()
    for a in args:
        if a == "--":
            break
        if a.startswith("--"):
            out.add(a.split("=", 1)[0])
        elif a.startswith("-") and len(a) > 1:
            out.update(a[1:])
    return out


def _operands(args: list[str]) -> list[str]:
    return [a for a in args if not a.startswith("-") and a not in {"<", ">", ">>"}]


def _broad(path: str) -> bool:
    p = path.rstrip("/") or "/"
    if path in _HOME_TARGETS or p in _SYSTEM_DIRS or path in _SYSTEM_DIRS:
        return True
    if p.endswith("/*") and (p[:-2] in _SYSTEM_DIRS or p[:-2] in _HOME_TARGETS):
        return True
    # "$DIR/" or "$DIR/*": one empty variable away from deleting /
    return bool(re.match(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/\*?$", path))


def dangers(line: str) -> list[Danger]:
    """Every danger found in `line` (empty list: nothing known to be destructive)."""
    found: list[Danger] = []

    def add(code: str, message: str) -> None:
        if all(d.code != code for d in found):
            found.append(Danger(code, message))

    if _FORK_BOMB.search(line):
        add(
            "fork-bomb",
            "fork bomb: this defines a function that spawns itself until the machine hangs",
        )
    if _SHELL_OF_DOWNLOAD.search(line):
        add("pipe-to-shell", "runs a script downloaded from the network without showing it first")

    commands = split_commands(line)
    for index, (words, sep) in enumerate(commands):
        word, args = program_of(words)
        prog = word.rsplit("/", 1)[-1]
        flags = _flags(args)
        ops = _operands(args)
        # Redirections: `> ~/.bashrc` truncates a dotfile, `> /dev/sda` writes a disk.
        for i, word in enumerate(words[:-1]):
            if word in {">", ">|"} and not (i > 0 and words[i - 1] == ">"):
                target = words[i + 1]
                if _DOTFILES.match(target):
                    add("dotfile-overwrite", f"overwrites {target} (use >> to append)")
                if _DEVICE.match(target):
                    add("device-write", f"writes directly to the device {target}")
        if prog == "rm" and flags & {"r", "R", "--recursive"}:
            broad = [o for o in ops if _broad(o)]
            if broad or "--no-preserve-root" in flags:
                add("rm-broad", f"recursive delete of a broad path: {' '.join(broad) or '/'}")
        elif (
            prog == "find"
            and ops
            and _broad(ops[0])
            and ops[0] not in {".", "./", "..", "../"}
            and ("-delete" in args or "rm" in args)
        ):
            add("rm-broad", f"deletes files under {ops[0]}")
        elif prog == "dd" and any(a.startswith("of=/dev/") and _DEVICE.match(a[3:]) for a in args):
            add("device-write", "dd writes directly to a disk device")
        elif prog.startswith("mkfs") or prog in {"wipefs", "mke2fs", "mkswap"}:
            add("device-format", f"{prog} erases a filesystem")
        elif prog in {"shred", "fdisk", "sfdisk", "parted", "gdisk", "sgdisk"} and any(
            _DEVICE.match(o) for o in ops
        ):
            add(
                "device-write",
                f"{prog} modifies the disk {next(o for o in ops if _DEVICE.match(o))}",
            )
        elif prog in {"chmod", "chown", "chgrp"} and flags & {"R", "--recursive"}:
            broad = [o for o in ops if _broad(o)]
            if broad:
                add("chmod-recursive", f"recursive {prog} on {' '.join(broad)}")
        elif prog == "mv" and ops and ops[-1] == "/dev/null":
            add("mv-devnull", "moves files to /dev/null, which destroys them")
        elif prog in {"mv", "cp"} and len(ops) >= 2 and _DOTFILES.match(ops[-1]):
            add("dotfile-overwrite", f"replaces {ops[-1]}")
        elif (
            prog in {"shutdown", "reboot", "halt", "poweroff"}
            or (prog == "init" and ops[:1] in (["0"], ["6"]))
            or (prog == "systemctl" and ops[:1] in (["poweroff"], ["reboot"], ["halt"]))
        ):
            add("shutdown", "shuts down or restarts the machine")
        elif (
            prog == "git"
            and ops[:1] == ["push"]
            and (flags & {"f", "--force"} or any(o.startswith("+") for o in ops[1:]))
        ):
            branches = [o.lstrip("+").split(":")[-1] for o in ops[2:]]
            if not branches or any(b in {"main", "master"} for b in branches):
                add("force-push", "force push that can overwrite the history of main/master")
        elif prog == "git" and ops[:1] == ["reset"] and "--hard" in flags:
            add("discard-changes", "git reset --hard discards uncommitted changes")
        elif prog == "git" and ops[:1] == ["clean"] and "f" in flags:
            add("discard-changes", "git clean -f deletes untracked files")
        elif prog == "crontab" and "r" in flags:
            add("crontab-remove", "crontab -r removes every cron job")
        elif prog == "kill" and "-1" in args:
            add("kill-all", "kill -1 signals every process you own")
        # curl ... | sh
        if prog in _DOWNLOADERS and sep in {"|", "|&"} and index + 1 < len(commands):
            nxt = program_of(commands[index + 1][0])[0].rsplit("/", 1)[-1]
            if nxt in INTERPRETERS:
                add("pipe-to-shell", f"pipes a download from {prog} straight into {nxt}")
    return found


def classify(line: str) -> list[str]:
    """The danger messages for `line`, one line each."""
    return [d.message for d in dangers(line)]
