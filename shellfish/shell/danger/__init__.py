"""Danger classification of a command line.

`dangers(line, cwd=None, home=None)` names what a command could destroy: recursive deletes
of broad places, writes to block devices, code downloaded (or decoded) straight into an
interpreter, recursive permission changes on system trees, overwrites of system files and
shell dotfiles, fork bombs, shutdowns, force pushes to main, docker prunes. The result is
shown to the user next to the suggestion; shellfish never runs a suggestion itself.

The checks are rules over programs and places, not over strings: the line is parsed once by
`shellfish.shell.syntax` (wrappers such as `sudo`, `timeout`, `env`, `\\rm` are skipped there,
and `sh -c` bodies, `$(...)`, `<(...)`, `xargs` and `find -exec` commands come back nested),
and every path operand is resolved by `shellfish.shell.places` against the request's cwd and
`$HOME`, so `rm -rf /home/me/*` run from `/home/me` is judged exactly like `rm -rf ~/*`.
With cwd or home unknown, `.` and `~` still stand for them. No shell is run, no disk read.

The rules live beside this module, one kind of damage each: `files` (delete, move,
overwrite), `permissions`, `disks`, `code` (downloads run unseen, code strings, ssh/alias
text) and `services` (git, containers, databases, power, cron, signals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from shellfish.shell.danger.code import (
    CODE_RUNNERS,
    FORK_BOMB,
    check_alias,
    check_code,
    check_pipeline,
    check_ssh,
    runs_download,
)
from shellfish.shell.danger.disks import (
    FORMATTERS,
    PARTITIONERS,
    check_destructive_test,
    check_disk_tool,
    check_diskutil,
    check_format,
)
from shellfish.shell.danger.files import (
    check_copy,
    check_dd,
    check_download_target,
    check_find,
    check_ln,
    check_mv,
    check_rm,
    check_rsync,
    check_tee,
    check_truncate,
    check_xargs,
    overwrite,
)
from shellfish.shell.danger.permissions import check_chmod, check_find_modes, check_setfacl
from shellfish.shell.danger.scope import (
    DECLARERS,
    SUBSTITUTIONS,
    Danger,
    Report,
    Scope,
    clean_dir,
    paths,
)
from shellfish.shell.danger.services import (
    check_crontab,
    check_docker,
    check_git,
    check_kill,
    check_kill_user,
    check_shutdown,
    check_sql,
    check_store,
    check_userdel,
)
from shellfish.shell.places import is_device
from shellfish.shell.syntax import SimpleCommand, parse

__all__ = ["Danger", "classify", "dangers"]

Check = Callable[[SimpleCommand, Scope, Report], None]


def dangers(line: str, cwd: str | None = None, home: str | None = None) -> list[Danger]:
    """Every danger found in `line` (empty list: nothing known to be destructive).

    `cwd` and `home` are the directory the line would run in and the user's `$HOME`
    (absolute paths; None when unknown). Each danger code is reported once.
    """
    report = Report()
    if FORK_BOMB.search(line):
        report.add(
            "fork-bomb",
            "fork bomb: this defines a function that spawns itself until the machine hangs",
        )
    scope = Scope(clean_dir(cwd), clean_dir(home), clean_dir(cwd))
    _check_sequence(parse(line).commands, scope, report, depth=0)
    return report.found


def classify(line: str, cwd: str | None = None, home: str | None = None) -> list[str]:
    """The danger messages for `line`, one line each."""
    return [d.message for d in dangers(line, cwd, home)]


def _check_sequence(
    commands: Sequence[SimpleCommand], scope: Scope, report: Report, depth: int
) -> None:
    """Check commands that run one after another, following `cd` and assignments."""
    if depth > 8:
        return
    pipeline: list[SimpleCommand] = []
    # A `cd` inside `( ... )` ends with the subshell: (depth, cwd before the subshell).
    saved: list[tuple[int, str | None]] = []
    for command in commands:
        while saved and command.subshell < saved[-1][0]:
            scope.cwd = saved.pop()[1]
        if command.subshell and (not saved or command.subshell > saved[-1][0]):
            saved.append((command.subshell, scope.cwd))
        pipeline.append(command)
        _check_command(command, pipeline, scope, report, depth)
        if command.separator not in {"|", "|&"}:
            check_pipeline(pipeline, scope, report)
            pipeline = []
        _follow(command, scope)
    if pipeline:
        check_pipeline(pipeline, scope, report)


def _follow(command: SimpleCommand, scope: Scope) -> None:
    """Update `scope` for what `command` changes for the commands after it."""
    if command.name == "cd" and command.separator not in {"|", "|&", "&"}:
        targets = [w for w in command.operands if w != "-"] or ["~"]
        found = paths(targets[0], scope)
        if len(found) == 1 and found[0].anchor == "/" and not found[0].has_glob:
            scope.cwd = str(found[0])
        elif len(found) == 1 and found[0].anchor == "~" and not found[0].parts:
            scope.cwd = scope.home
        else:
            scope.cwd = None
    elif command.keywords[:1] == ("for",) and len(command.words) >= 2:
        words = list(command.words)
        values = words[3:] if words[2:3] == ["in"] else []
        scope.variables[words[1]] = values
    elif (not command.program and command.assignments) or command.name in DECLARERS:
        words = list(command.assignments if not command.program else ())
        if command.name in DECLARERS:
            words += [w for w in command.operands if "=" in w]
        for assignment in words:
            name, _, value = assignment.partition("=")
            scope.variables[name.rstrip("+")] = [value]


def _check_command(
    command: SimpleCommand,
    pipeline: list[SimpleCommand],
    scope: Scope,
    report: Report,
    depth: int,
) -> None:
    name = command.name
    for redirect in command.redirects:
        if redirect.op in {">", ">|", "&>", "<>"} or (
            redirect.op == ">&" and not redirect.target.isdigit() and redirect.target != "-"
        ):
            for path in paths(redirect.target, scope):
                overwrite(path, scope, report, "overwrites")
        elif redirect.op in {">>", "&>>"}:
            for path in paths(redirect.target, scope):
                if is_device(path):
                    report.add("device-write", f"writes directly to the device {path}")
    check = _CHECKS.get(name)
    if command.flag_names() & {"--help", "--version"}:
        pass  # prints and exits: `shutdown --help` shuts nothing down
    elif check is not None:
        check(command, scope, report)
    elif FORMATTERS.match(name):
        check_format(command, scope, report)
    elif name.startswith(("python", "perl", "ruby", "node", "php")):
        check_code(command, scope, report)
    # The commands this one runs: `sh -c` bodies and `find -exec` / `xargs` commands run in
    # this scope; substitutions run in a copy (a `cd` inside `$(...)` stays there).
    nested = [c for c in command.nested if c.via not in SUBSTITUTIONS]
    substituted = [c for c in command.nested if c.via in SUBSTITUTIONS]
    if nested:
        inner = replace(scope, variables=dict(scope.variables))
        _check_sequence(nested, inner, report, depth + 1)
    if substituted:
        _check_sequence(
            substituted, replace(scope, variables=dict(scope.variables)), report, depth + 1
        )
    if name in CODE_RUNNERS and runs_download(command):
        report.add(
            "pipe-to-shell", "runs a script downloaded from the network without showing it first"
        )
    if name == "xargs":
        check_xargs(command, pipeline, scope, report)


def _check_find(command: SimpleCommand, scope: Scope, report: Report) -> None:
    check_find(command, scope, report)  # deletes
    check_find_modes(command, scope, report)  # -exec chmod / chown


# The rule for each program (the program's basename, after wrappers).
_CHECKS: dict[str, Check] = {
    # files
    "rm": check_rm,
    "unlink": check_rm,
    "find": _check_find,
    "rsync": check_rsync,
    "mv": check_mv,
    "cp": check_copy,
    "install": check_copy,
    "ln": check_ln,
    "tee": check_tee,
    "truncate": check_truncate,
    "dd": check_dd,
    "curl": check_download_target,
    "wget": check_download_target,
    # permissions
    "chmod": check_chmod,
    "chown": check_chmod,
    "chgrp": check_chmod,
    "setfacl": check_setfacl,
    # disks
    "shred": check_disk_tool,
    "diskutil": check_diskutil,
    "badblocks": check_destructive_test,
    "hdparm": check_destructive_test,
    **dict.fromkeys(PARTITIONERS, check_disk_tool),
    # text that runs elsewhere or later
    "ssh": check_ssh,
    "alias": check_alias,
    # services
    "git": check_git,
    "docker": check_docker,
    "docker-compose": check_docker,
    "podman": check_docker,
    **dict.fromkeys(("mysql", "mariadb", "psql", "sqlite3"), check_sql),
    **dict.fromkeys(
        ("redis-cli", "kubectl", "oc", "terraform", "tofu", "pulumi", "aws", "gsutil", "gcloud"),
        check_store,
    ),
    **dict.fromkeys(
        ("shutdown", "reboot", "halt", "poweroff", "init", "telinit", "systemctl"), check_shutdown
    ),
    "crontab": check_crontab,
    "kill": check_kill,
    **dict.fromkeys(("pkill", "killall", "killall5"), check_kill_user),
    **dict.fromkeys(("userdel", "deluser"), check_userdel),
}
