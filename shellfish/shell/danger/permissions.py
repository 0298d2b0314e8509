"""Danger rules for permission and ownership changes (chmod, chown, chgrp, setfacl).

Recursive changes on `/`, system trees, homes or the cwd are flagged, except the harmless
ones: a home given back to its owner (`chown -R $USER ~`), a mode that keeps the owner's access
and gives others no write (`chmod -R 700 ~/.ssh`, `chmod -R u+w .`); ownership changes in the
cwd are the user's own business. Making a system file world-writable is flagged too.
"""

from __future__ import annotations

import re
from itertools import pairwise

from shellfish.shell.danger.files import find_roots, find_tests, system_file
from shellfish.shell.danger.scope import Report, Scope, judge, paths
from shellfish.shell.places import Path
from shellfish.shell.syntax import SimpleCommand


def check_chmod(command: SimpleCommand, scope: Scope, report: Report) -> None:
    flags = command.flag_names()
    recursive = bool(flags & {"-R", "--recursive"})
    ops = command.operands
    targets = ops if any(f.name.startswith("--reference") for f in command.flags) else ops[1:]
    to_self = command.name != "chmod" and bool(ops) and _is_self(ops[0], scope)
    for word in targets:
        verdict = judge(word, scope)
        if verdict is None:
            writable = command.name == "chmod" and bool(ops) and _world_writable(ops[0])
            hit = next((p for p in paths(word, scope) if writable and system_file(p)), None)
            if hit is not None:
                report.add("chmod-recursive", f"makes the system file {hit} world-writable")
                return
            continue
        found = paths(word, scope)
        if command.name == "chmod" and verdict.kind in {"home", "cwd"}:
            if ops and _harmless_mode(ops[0]):
                continue  # `chmod -R 700 ~/.ssh`, `chmod -R u+w .`: the owner keeps access
        elif (
            verdict.kind == "cwd"
            or (to_self and all(_within_home(p, scope) for p in found))
            or (command.name != "chmod" and ops and all(_owner_of_home(ops[0], p) for p in found))
        ):
            continue
        if recursive or (verdict.kind in {"root", "system"} and "*" not in word):
            mode = "recursive " if recursive else ""
            report.add("chmod-recursive", f"{mode}{command.name} on {verdict.label}")
            return


def check_find_modes(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`find / -exec chmod 777 {} +`: a chmod/chown of everything under the start points
    (unless the find chooses files: -name, -user, -perm...; -type f/d choose no files)."""
    runs = [c for c in command.nested if c.via == "-exec" and c.name in {"chmod", "chown", "chgrp"}]
    if not runs or find_tests(command.args):
        return  # -user, -perm, -name...: the chosen files only
    args = list(command.args)
    files_only = any(a == "-type" and b == "f" for a, b in pairwise(args))
    for run in runs:
        first = run.operands[0] if run.operands else ""
        for root in find_roots(command):
            verdict = judge(root, scope)
            if verdict is None:
                continue
            if verdict.kind in {"home", "cwd"} and (
                run.name != "chmod" or _harmless_mode(first, files_only=files_only)
            ):
                continue
            report.add("chmod-recursive", f"find runs {run.name} on everything in {verdict.label}")
            return


def check_setfacl(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if not command.flag_names() & {"-R", "--recursive"}:
        return
    for word in command.operands:
        verdict = None if ":" in word else judge(word, scope)
        if verdict is not None and verdict.kind != "cwd":
            report.add("chmod-recursive", f"recursive setfacl on {verdict.label}")
            return


def _is_self(owner: str, scope: Scope) -> bool:
    """`$USER`, `$(whoami)`, `me:me` for home /home/me: giving your files back to you."""
    user = owner.split(":", 1)[0].split(".", 1)[0]
    mine = {"$USER", "${USER}", "$(whoami)", "`whoami`", "$(id -u)", "$UID", "$LOGNAME"}
    if scope.home:
        mine.add(scope.home.rstrip("/").rsplit("/", 1)[-1])
    return user in mine


def _owner_of_home(owner: str, path: Path) -> bool:
    """`chown -R bob /home/bob`: a home directory given back to the user it is named after."""
    user = owner.split(":", 1)[0].split(".", 1)[0]
    return (
        path.anchor == "/"
        and len(path.parts) >= 2
        and path.parts[:2]
        in {
            ("home", user),
            ("Users", user),
        }
    )


def _within_home(path: Path, scope: Scope) -> bool:
    """`path` is $HOME or below it (not a parent of it)."""
    if path.anchor == "~":
        return ".." not in path.parts
    home = tuple(p for p in (scope.home or "").split("/") if p)
    return bool(home) and path.anchor == "/" and path.parts[: len(home)] == home


def _harmless_mode(mode: str, *, files_only: bool = False) -> bool:
    """A mode that leaves the owner able to read (and enter directories) and gives others no
    write: 755, 700, 500, 775, go-rwx, u+w, a+rX (`+w` too: the umask keeps it to the owner).
    For plain files (`find -type f`) the owner needs no x: 644, 600, 400 are harmless there."""
    needed = {"r"} if files_only else {"r", "x"}
    if mode.isdigit() and len(mode) in {3, 4}:
        owner, other = int(mode[-3]), int(mode[-1])
        has = {p for p, bit in (("r", 4), ("w", 2), ("x", 1)) if owner & bit}
        return needed <= has and not other & 2
    for clause in mode.split(","):
        m = re.fullmatch(r"([ugoa]*)((?:[-+=][rwxXst]*)+)", clause)
        if m is None:
            return False
        who, actions = m.groups()
        owner = not who or "u" in who or "a" in who
        for op, perms in re.findall(r"([-+=])([rwxXst]*)", actions):  # u+r-wx: two actions
            named = set(perms.replace("X", "x"))
            takes_from_owner = owner and (
                (op == "-" and bool(needed & named)) or (op == "=" and not needed <= named)
            )
            gives_others_write = op in "+=" and "w" in perms and ("o" in who or "a" in who)
            if takes_from_owner or gives_others_write:
                return False
    return True


def _world_writable(mode: str) -> bool:
    if mode.isdigit():
        return int(mode[-1]) & 2 == 2
    return bool(re.search(r"(?:^|,)[ao]*[+=][rwxXst]*w", mode)) and not mode.startswith("u")
