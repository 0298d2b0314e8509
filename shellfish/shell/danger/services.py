"""Danger rules for programs whose damage is not to files: git history, containers,
databases and clusters, the machine's power, cron, every process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shellfish.shell.danger.scope import SUBSTITUTIONS, Report, Scope, judge
from shellfish.shell.syntax import SimpleCommand


def check_git(command: SimpleCommand, scope: Scope, report: Report) -> None:
    ops = list(command.operands)
    if not ops:
        return
    sub, rest = ops[0], ops[1:]
    flags = command.flag_names()
    if sub == "push":
        _check_push(command, rest, flags, report)
    elif sub == "reset" and "--hard" in flags:
        report.add("discard-changes", "git reset --hard discards uncommitted changes")
    elif (
        sub == "clean"
        and flags & {"-f", "--force"}
        and not flags & {"-n", "--dry-run"}
        and (not rest or any(judge(p, scope) is not None for p in rest))
    ):
        report.add("discard-changes", "git clean -f deletes untracked files")
    elif sub == "checkout" and flags & {"-f", "--force"}:
        report.add("discard-changes", "git checkout -f discards uncommitted changes")
    elif sub == "stash" and rest[:1] == ["clear"]:
        report.add("discard-changes", "git stash clear deletes every stash")
    elif (
        sub in {"checkout", "restore"}
        and not flags & {"--staged", "-S", "-b", "-B"}
        and any(judge(p, scope) is not None for p in rest if p in {".", "./", ":/", "*"})
    ):
        report.add("discard-changes", f"git {sub} . discards every uncommitted change")


def _check_push(
    command: SimpleCommand, rest: Sequence[str], flags: frozenset[str], report: Report
) -> None:
    refspecs = list(rest[1:])
    branches = [r.lstrip("+").split(":")[-1].removeprefix("refs/heads/") for r in refspecs]
    main = any(b in {"main", "master"} for b in branches)
    if (flags & {"-d", "--delete"} and main) or any(
        r.startswith(":") and r[1:].removeprefix("refs/heads/") in {"main", "master"}
        for r in refspecs
    ):
        report.add("force-push", "deletes the remote main/master branch")
        return
    forced = bool(flags & {"-f", "--force", "--mirror"}) or any(r.startswith("+") for r in refspecs)
    leased = bool(flags & {"--force-with-lease", "--force-if-includes"})
    # no refspec or HEAD: the current branch, which may well be main
    current = not refspecs or any(b in {"HEAD", "@"} for b in branches)
    if (forced and (current or main or "--mirror" in flags)) or (leased and main):
        report.add("force-push", "force push that can overwrite the history of main/master")


def check_docker(command: SimpleCommand, scope: Scope, report: Report) -> None:
    ops = list(command.operands)
    flags = command.flag_names()
    if "down" in ops[:2] and flags & {"-v", "--volumes"}:
        report.add("docker-prune", "compose down -v deletes the project's volumes and their data")
        return
    if "prune" in ops[:2]:
        forced = bool(flags & {"-f", "--force"}) and "--filter" not in flags
        everything = bool(flags & {"-a", "--all", "--volumes"}) or ops[0] in {"system", "volume"}
        if forced and everything:
            report.add("docker-prune", f"{command.name} {' '.join(ops[:2])} deletes without asking")
        return
    removes = ops[:1] in (["rm"], ["rmi"]) or (len(ops) >= 2 and ops[1] in {"rm", "remove"})
    if removes and any(
        c.via in SUBSTITUTIONS
        and c.name in {"docker", "podman"}
        and not any("dangling=true" in w for w in c.args)
        and ("volume" in ops[:1] or not c.flag_names() & {"-f", "--filter"})
        for c in command.nested
    ):
        report.add("docker-prune", f"removes every {command.name} object a listing returns")


_SQL_DESTROY = re.compile(
    r"\b(?:drop\s+(?:database|schema|table)|truncate\s+(?:table\s+)?\w|delete\s+from\s+\w+\s*(?:;|$))",
    re.I,
)


def check_sql(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`mysql -e 'DROP DATABASE x'`, `psql -c 'TRUNCATE t'`, a DELETE without WHERE."""
    texts = [f.value for f in command.flags if f.value] + list(command.operands)
    texts += [r.target for r in command.redirects if r.op == "<<<"]
    for text in texts:
        m = _SQL_DESTROY.search(text)
        if m is not None:
            report.add("data-destroy", f"{command.name} runs {m.group(0).strip()}")
            return


def check_store(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """Whole-store deletes: redis FLUSHALL, kubectl delete --all, terraform destroy, s3 rm -r."""
    ops = [o.lower() for o in command.operands]
    flags = command.flag_names()
    name = command.name
    if name == "redis-cli" and {"flushall", "flushdb"} & set(ops):
        report.add("data-destroy", "redis-cli FLUSHALL deletes every key")
    elif (
        name in {"kubectl", "oc"}
        and ops[:1] == ["delete"]
        and flags & {"--all", "-A", "--all-namespaces"}
    ):
        report.add("data-destroy", f"{name} delete --all removes every matching resource")
    elif name in {"kubectl", "oc"} and ops[:2] in (["delete", "namespace"], ["delete", "ns"]):
        report.add("data-destroy", f"{name} deletes a whole namespace")
    elif name in {"terraform", "tofu", "pulumi"} and "destroy" in ops[:1]:
        report.add("data-destroy", f"{name} destroy deletes the managed infrastructure")
    elif (
        name == "aws"
        and ops[:2] in (["s3", "rm"], ["s3", "rb"])
        and flags & {"--recursive", "--force"}
    ):
        report.add("data-destroy", "aws s3 deletes a whole bucket or prefix")
    elif (
        name in {"gsutil", "gcloud"}
        and ("rm" in ops[:3] or "rb" in ops[:3])
        and flags & {"-r", "-R", "--recursive"}
    ):
        report.add("data-destroy", f"{name} deletes a whole bucket or prefix")


def check_shutdown(command: SimpleCommand, scope: Scope, report: Report) -> None:
    ops = list(command.operands)
    name = command.name
    if (
        (name in {"shutdown", "reboot", "halt", "poweroff"} and "-c" not in command.flag_names())
        or (name in {"init", "telinit"} and ops[:1] in (["0"], ["6"]))
        or (name == "systemctl" and ops[:1] in (["poweroff"], ["reboot"], ["halt"], ["kexec"]))
    ):
        report.add("shutdown", "shuts down or restarts the machine")


def check_crontab(command: SimpleCommand, scope: Scope, report: Report) -> None:
    if "-r" in command.flag_names():
        report.add("crontab-remove", "crontab -r removes every cron job")


def check_kill_user(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`pkill -u bob`, `killall -u bob` with nothing else chosen, `killall5`: every process."""
    if command.name == "killall5":
        report.add("kill-all", "killall5 signals every process on the machine")
        return
    flags = command.flag_names()
    chosen_by_user = bool(flags & {"-u", "-U", "--user", "--euid", "--uid"})
    if chosen_by_user and not command.operands:
        report.add("kill-all", f"{command.name} -u signals every process of that user")


def check_userdel(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`userdel -r` / `deluser --remove-home` delete the user's home with the account."""
    if command.flag_names() & {"-r", "--remove", "--remove-home", "--remove-all-files"}:
        report.add("rm-broad", f"{command.name} deletes the account and its home directory")


def check_kill(command: SimpleCommand, scope: Scope, report: Report) -> None:
    args = list(command.args)
    if args[:1] == ["-s"] or args[:1] == ["-n"]:
        args = args[2:]
    elif args and args[0].startswith("-") and args[0] != "-1":
        args = args[1:]  # the signal: -9, -KILL, -SIGTERM
    if "-1" in args:
        report.add("kill-all", "kill -1 signals every process you own")
