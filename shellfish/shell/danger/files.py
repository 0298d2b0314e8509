"""Danger rules for deleting, moving and overwriting files.

`rm`, `find -delete`, `xargs rm`, `rsync --delete` are judged on the places they empty
(`shellfish.shell.places.protected`); `mv` on what it takes away; `>`, `tee`, `truncate`,
`cp`, `ln -f`, `dd of=`, `curl -o` on what they overwrite: a disk device, a shell dotfile in a
home, or a system file (/boot, /usr/bin..., /etc except drop-in directories).
"""

from __future__ import annotations

from collections.abc import Sequence

from shellfish.shell.danger.scope import (
    BACKUP_NAME,
    Report,
    Scope,
    judge,
    paths,
    targets,
    word_set,
)
from shellfish.shell.grammar import FIND_EXEC_ACTIONS
from shellfish.shell.places import Path, is_device, matches_everything
from shellfish.shell.syntax import SimpleCommand

# Files in a home that a shell (or ssh, git, vim) reads at start: overwriting one loses setup.
_SHELL_DOTFILES = word_set(
    ".bashrc .bash_profile .bash_login .bash_logout .profile .zshrc .zshenv .zprofile .zlogin"
    " .zlogout .kshrc .mkshrc .cshrc .tcshrc .login .inputrc .gitconfig .vimrc"
)

# Files in ~/.ssh besides the keys (id_*): who may log in, and where to.
_SSH_FILES = frozenset({"authorized_keys", "config"})

# Directories under /etc that hold one file per package or service (drop-ins): writing a
# new file there is how software is configured, not an overwrite of the system's settings.
_DROP_IN_DIRS = frozenset(
    {"system", "user", "sites-available", "sites-enabled", "conf-available", "conf-enabled"}
    | {"mods-available", "mods-enabled", "keyrings", "trusted.gpg.d"}
)

# /etc subdirectories whose files decide whether the machine boots and lets anyone log in.
_LOGIN_CONFIG_DIRS = frozenset({"ssh", "pam.d", "default", "security", "grub.d"})

# Directories of programs and libraries (at / and under /usr).
_SYSTEM_BINARY_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "libexec"})

# find tests that narrow what is deleted to chosen names (as opposed to -type or -mtime).
_FIND_NARROWING = word_set(
    "-name -iname -path -ipath -wholename -iwholename -regex -iregex -lname -ilname -empty"
    " -inum -samefile -links"
)

# find words that do not choose files (options, actions, operators).
_FIND_NOT_CHOOSING = word_set(
    "-type -xtype -mindepth -maxdepth -depth -d -print -print0 -printf -ls -fls -fprint"
    " -fprint0 -fprintf -delete -L -H -P -xdev -mount -follow -daystart -noleaf -prune"
    " -ignore_readdir_race -regextype -o -a -and -or -not -true -quit -x"
)


def _is_home(parts: tuple[str, ...], scope: Scope, anchor: str) -> bool:
    """Are `parts` (under `anchor`) a home directory: $HOME, /home/NAME, /Users/NAME, /root?"""
    if anchor == "~":
        return not parts
    if anchor != "/":
        return False
    home = tuple(p for p in (scope.home or "").split("/") if p)
    return (
        (scope.home is not None and parts == home)
        or (len(parts) == 2 and parts[0] in {"home", "Users"})
        or parts == ("root",)
    )


def dotfile(path: Path, scope: Scope) -> bool:
    """A shell startup file or ssh/git setting in a home directory (`~/.zshrc`)."""
    parts = path.parts
    if not parts:
        return False
    if parts[-1] in _SHELL_DOTFILES and _is_home(parts[:-1], scope, path.anchor):
        return True
    return (
        len(parts) >= 2
        and parts[-2] == ".ssh"
        and (parts[-1] in _SSH_FILES or parts[-1].startswith("id_"))
        and _is_home(parts[:-2], scope, path.anchor)
    )


def system_file(path: Path, *, critical: bool = False) -> bool:
    """A file the system boots or runs from: /boot, /bin, /usr/lib..., /etc but drop-ins.

    `critical`: of /etc only its own files (/etc/passwd, /etc/fstab, /etc/sudoers) and those
    of login and boot (/etc/ssh, /etc/pam.d, /etc/default).
    """
    if path.anchor != "/" or len(path.parts) < 2:
        return False
    parts = path.parts[1:] if path.parts[0] == "private" else path.parts
    top = parts[0]
    if top in {"boot", "System"} or top in _SYSTEM_BINARY_DIRS:
        return len(parts) >= 2
    if top == "usr":
        return len(parts) >= 3 and parts[1] in _SYSTEM_BINARY_DIRS
    if top == "etc" and critical:
        return len(parts) == 2 or (len(parts) == 3 and parts[1] in _LOGIN_CONFIG_DIRS)
    if top == "etc" and len(parts) >= 2:
        parent = parts[-2]
        return not (len(parts) >= 3 and (parent.endswith(".d") or parent in _DROP_IN_DIRS))
    return False


def overwrite(
    path: Path, scope: Scope, report: Report, how: str, *, critical: bool = False
) -> None:
    """Report `how` (a verb phrase) replacing the contents of `path`, if that path matters.

    `critical`: only the system files a machine cannot boot or log in without count (cp, mv
    and ln install configuration files into /etc subdirectories all the time).
    """
    if path.parts and BACKUP_NAME.search(path.parts[-1]):
        return  # a backup copy (`x.bak`, `x.new`): a new file beside the real one
    if is_device(path):
        report.add("device-write", f"{how} the disk device {path}")
    elif dotfile(path, scope):
        hint = " (append with >> or tee -a)" if how == "overwrites" else ""
        report.add("dotfile-overwrite", f"{how} {path}{hint}")
    elif system_file(path, critical=critical):
        report.add("system-overwrite", f"{how} the system file {path}")


def check_rm(command: SimpleCommand, scope: Scope, report: Report) -> None:
    _judge_delete(command, command.operands, scope, report)


def _judge_delete(
    command: SimpleCommand, operands: Sequence[str], scope: Scope, report: Report
) -> None:
    flags = command.flag_names()
    recursive = bool(flags & {"-r", "-R", "--recursive"})
    if "--no-preserve-root" in flags:
        report.add("rm-broad", "recursive delete with --no-preserve-root")
        return
    for word in operands:
        verdict = judge(word, scope)
        if verdict is not None and verdict.kind == "cwd" and _asks(command):
            continue  # `rm -ri *` here: every file is confirmed first
        if verdict is not None and recursive:
            report.add("rm-broad", f"recursive delete of {verdict.label}")
            return
        # without -r only files go, but a glob over / or $HOME still takes all of them
        if (
            verdict is not None
            and verdict.kind != "cwd"
            and any(p.parts and matches_everything(p.parts[-1]) for p in paths(word, scope))
        ):
            report.add("rm-broad", f"deletes {verdict.label}")
            return
        for path in paths(word, scope):
            if system_file(path):
                report.add("rm-broad", f"deletes the system file {path}")
                return


def check_find(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if _find_deletes(command):
        _judge_find(command, scope, report)


def _find_deletes(command: SimpleCommand) -> bool:
    """-delete, or an -exec/-execdir of rm without a prompt (-ok asks for every file)."""
    if "-delete" in command.args:
        return True
    actions = [a for a in command.args if a in FIND_EXEC_ACTIONS]
    runs = [c for c in command.nested if c.via == "-exec"]
    return any(
        action in {"-exec", "-execdir"} and c.name in {"rm", "unlink", "shred"} and not _asks(c)
        for action, c in zip(actions, runs, strict=False)
    )


def _asks(command: SimpleCommand) -> bool:
    """`rm -i`: asks before every file (a later -f cancels it)."""
    prompts = [f.name for f in command.flags if f.name in {"-i", "-f", "--interactive", "--force"}]
    return bool(prompts) and prompts[-1] in {"-i", "--interactive"}


def find_tests(args: Sequence[str]) -> list[str]:
    """The tests of a find expression that choose files, outside -exec bodies."""
    tests: list[str] = []
    inside_exec = False
    for arg, after in zip(args, [*args[1:], ""], strict=True):
        if inside_exec:
            inside_exec = arg not in {";", "+", "\\;"}
        elif arg in FIND_EXEC_ACTIONS:
            inside_exec = True
        elif arg in {"-type", "-xtype"} and after not in {"f", "d", "f,d", "d,f"}:
            tests.append(arg)  # symlinks, sockets...: a kind of file, not all of them
        elif arg.startswith("-") and len(arg) > 1 and arg not in _FIND_NOT_CHOOSING:
            tests.append(arg)
    return tests


def find_roots(command: SimpleCommand) -> list[str]:
    """The start points of a find command ("." when none is given)."""
    roots: list[str] = []
    args = list(command.args)
    while args and args[0] in {"-L", "-H", "-P"}:  # options before the start points
        args.pop(0)
    for arg in args:
        if arg.startswith(("-", "(", "!")):
            break
        roots.append(arg)
    return roots or ["."]


def picks_names(tests: Sequence[str]) -> bool:
    """Do these find tests choose files by name or path (-name, -path, -regex...)?"""
    return any(t in _FIND_NARROWING for t in tests)


def _judge_find(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """find deleting under `/` or a system tree whatever its tests; under $HOME unless it
    picks names (-name, -path...); under the cwd only when it picks nothing at all."""
    tests = find_tests(command.args)
    by_name = picks_names(tests)
    for root in find_roots(command):
        verdict = judge(root, scope, contents=True)
        if verdict is None:
            continue
        # `/`, a top-level tree, or a directory of system files (/usr/lib, /boot): any
        # delete there is a disaster; /var/log with -name '*.gz' is housekeeping
        broad = verdict.kind == "root" or any(
            len(p.parts) <= 1 or system_file(Path(p.anchor, (*p.parts, "x")))
            for p in paths(root, scope)
            if p.anchor == "/"
        )
        if (
            (verdict.kind in {"root", "system"} and broad)
            or (verdict.kind != "cwd" and not by_name)
            or not tests
        ):
            report.add("rm-broad", f"deletes files under {verdict.label}")
            return


def check_xargs(
    command: SimpleCommand, pipeline: list[SimpleCommand], scope: Scope, report: Report
) -> None:
    """`ls ~ | xargs rm -rf`, `echo / | xargs rm -rf`, `find ~ | xargs rm`: judge what is fed."""
    runs = [c for c in command.nested if c.via == "xargs" and c.name in {"rm", "unlink"}]
    if not runs or pipeline[-1] is not command:
        return
    fed = [r.target for r in command.redirects if r.op == "<<<"]
    if fed:
        _judge_delete(runs[0], fed[0].split(), scope, report)
        return
    if len(pipeline) < 2:
        return
    producer = pipeline[-2]
    if producer.name in {"echo", "printf"}:
        _judge_delete(runs[0], producer.operands, scope, report)
    elif producer.name == "ls":
        dirs = [o for o in producer.operands] or ["."]
        _judge_delete(runs[0], [d.rstrip("/") + "/*" for d in dirs], scope, report)
    elif producer.name == "find":
        _judge_find(producer, scope, report)


def check_rsync(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if not any(f.name.startswith("--delete") for f in command.flags) or len(command.operands) < 2:
        return
    verdict = judge(command.operands[-1].rstrip("/") + "/*", scope)
    if verdict is not None:
        report.add("rm-broad", f"rsync --delete removes {verdict.label}")


def _destinations(sources: Sequence[str], dest: str, scope: Scope) -> list[str]:
    """Where cp/mv/ln put their sources: `dest` itself, or `dest/NAME` for a directory.

    A directory is known from a trailing "/", or from being a protected place ($HOME, /etc).
    """
    is_dir = dest.endswith("/") or judge(dest, scope, contents=False) is not None
    if not is_dir:
        return [dest]
    return [dest.rstrip("/") + "/" + s.rstrip("/").rsplit("/", 1)[-1] for s in sources]


def check_mv(command: SimpleCommand, scope: Scope, report: Report) -> None:
    ops = command.operands
    if len(ops) < 2:
        return
    sources, dest = ops[:-1], ops[-1]
    if dest == "/dev/null":
        report.add("mv-devnull", "moves files to /dev/null, which destroys them")
        return
    for word in sources:
        verdict = judge(word, scope)
        if verdict is not None and verdict.kind != "cwd":
            report.add("move-broad", f"moves {verdict.label} away")
            return
        # renaming a file to its backup name keeps it (until a new one is written there)
        moved = [p for p in paths(word, scope) if system_file(p, critical=True)]
        if moved and not BACKUP_NAME.search(dest):
            report.add("move-broad", f"moves the system file {moved[0]} away")
            return
    _check_copy_dest(sources, dest, scope, report)


def check_copy(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if len(command.operands) >= 2:
        _check_copy_dest(command.operands[:-1], command.operands[-1], scope, report)


def _check_copy_dest(sources: Sequence[str], dest: str, scope: Scope, report: Report) -> None:
    named = _destinations(sources, dest, scope)
    into_directory = named != [dest]
    for target in named:
        for path in paths(target, scope):
            # a file copied into a directory is new there unless its name is a dotfile's
            if into_directory and not dotfile(path, scope):
                continue
            overwrite(path, scope, report, "replaces", critical=True)


def check_ln(command: SimpleCommand, scope: Scope, report: Report) -> None:
    flags = command.flag_names()
    if flags & {"-f", "--force"} and len(command.operands) >= 2:
        _check_copy_dest(command.operands[:-1], command.operands[-1], scope, report)


def check_download_target(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`curl -o ~/.zshrc URL`, `wget -O /etc/hosts URL`: a download written over a file."""
    outputs = {"-o", "--output"} if command.name != "wget" else {"-O", "--output-document"}
    for flag in command.flags:
        if flag.name in outputs and flag.value and flag.value != "-":
            for path in paths(flag.value, scope):
                overwrite(path, scope, report, f"{command.name} overwrites")


def check_tee(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if command.flag_names() & {"-a", "--append"}:
        return
    for path in targets(command.operands, scope):
        overwrite(path, scope, report, "overwrites")


def check_truncate(command: SimpleCommand, scope: Scope, report: Report) -> None:
    for path in targets(command.operands, scope):
        overwrite(path, scope, report, "empties")


def check_dd(command: SimpleCommand, scope: Scope, report: Report) -> None:
    for word in command.operands:
        if word.startswith("of="):
            for path in paths(word[3:], scope):
                overwrite(path, scope, report, "dd overwrites")
