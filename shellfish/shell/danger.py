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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from shellfish.shell.grammar import FIND_EXEC_ACTIONS, INTERPRETERS, SHELLS
from shellfish.shell.places import (
    Path,
    Verdict,
    is_device,
    matches_everything,
    protected,
    resolve,
)
from shellfish.shell.syntax import SimpleCommand, parse


@dataclass(frozen=True)
class Danger:
    code: str  # stable identifier: rm-broad, device-write, pipe-to-shell, ...
    message: str  # one line for the user


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DOWNLOADERS = frozenset({"curl", "wget", "fetch", "http", "https", "aria2c", "xh", "curlie"})
# Builtins whose NAME=value operands set variables for the commands after them.
_DECLARERS = frozenset({"export", "declare", "typeset", "local", "readonly"})
_SUBSTITUTIONS = frozenset({"$(", "`", "<("})
# Programs that run code given as text: a shell, `eval`, `source`.
_CODE_RUNNERS = INTERPRETERS | {"eval", "source", "."}
_FORK_BOMB = re.compile(r"([\w:.]+)\s*\(\)\s*\{[^}]*\1\s*\|\s*&?\s*\1\s*&[^}]*\}\s*;?\s*\1")
_SHELL_DOTFILES = _words(
    ".bashrc .bash_profile .bash_login .bash_logout .profile .zshrc .zshenv .zprofile .zlogin"
    " .zlogout .kshrc .mkshrc .cshrc .tcshrc .login .inputrc .gitconfig .vimrc"
)
_SSH_FILES = frozenset({"authorized_keys", "config", "known_hosts"})
# Directories under /etc that hold one file per package or service (drop-ins): writing a
# new file there is how software is configured, not an overwrite of the system's settings.
_DROP_IN_DIRS = frozenset(
    {"system", "user", "sites-available", "sites-enabled", "conf-available", "conf-enabled"}
    | {"mods-available", "mods-enabled", "keyrings", "trusted.gpg.d"}
)
_LOGIN_CONFIG_DIRS = frozenset({"ssh", "pam.d", "default", "security", "grub.d"})
_SYSTEM_BINARY_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "libexec"})
# find tests that narrow what is deleted to chosen names (as opposed to -type or -mtime).
_FIND_NARROWING = _words(
    "-name -iname -path -ipath -wholename -iwholename -regex -iregex -lname -ilname -empty"
    " -inum -samefile -links"
)
# find words that do not choose files (options, actions, operators).
_FIND_NOT_CHOOSING = _words(
    "-type -xtype -mindepth -maxdepth -depth -d -print -print0 -printf -ls -fls -fprint"
    " -fprint0 -fprintf -delete -L -H -P -xdev -mount -follow -daystart -noleaf -prune"
    " -ignore_readdir_race -regextype -o -a -and -or -not -true -quit -x"
)
_FORMATTERS = re.compile(r"^(?:mkfs(?:\..+)?|mke2fs|mkswap|mkdosfs|mkntfs|newfs(?:_.+)?|wipefs)$")
_PARTITIONERS = frozenset({"fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "parted", "blkdiscard"})
_PARTITION_READ_ONLY = frozenset({"-l", "--list", "-p", "--print", "-d", "--dump", "-V", "-s"})
_DISKUTIL_ERASE = re.compile(r"^(?:erase|zero|random|secureErase|partitionDisk|reformat)", re.I)
# Deleting calls of scripting languages and the shell-running calls whose string we parse.
_CODE_DELETE = re.compile(
    r"\b(?:rmtree|rm_rf|rm_r|remove_dir|remove_entry_secure|rmSync|rmdirSync|removedirs"
    r"|rimraf(?:\.sync)?|remove_tree|rmtree_p)\s*\("
)
_CODE_SHELL = re.compile(
    r"\b(?:system|popen|run|call|check_call|check_output|Popen|exec|execSync|spawnSync"
    r"|getoutput|getstatusoutput|qx)\s*\(?\s*(?:\[\s*)?(?P<q>['\"`])(?P<cmd>.*?)(?P=q)"
)
_CODE_HOME = re.compile(
    r"(?:Path\.home\(\)|expanduser\(\s*['\"]~['\"]\s*\)|\.homedir\(\)|Dir\.home"
    r"|ENV\[['\"]HOME['\"]\]|environ\[['\"]HOME['\"]\])"
)
# eval/exec of what a URL returns: `eval(file_get_contents("https://..."))`.
_CODE_EVAL_FETCH = re.compile(
    r"\b(?:eval|exec|Function|instance_eval)\s*\(.{0,80}?"
    r"(?:urlopen|urlretrieve|file_get_contents\s*\(\s*['\"]https?:|requests\.get|URI\.open"
    r"|Net::HTTP|https?\.get|fetch\s*\(|LWP::Simple|get\s*\(\s*['\"]https?:)"
)
_BACKUP_NAME = re.compile(r"(?:\.(?:bak|backup|orig|old|save|dist|new|sample)\d*|~)$")
_STRING = re.compile(r"""(['"])(.*?)\1""")


@dataclass
class _Scope:
    """What the commands of one sequence run with: the cwd (as `cd` moves it) and variables."""

    cwd: str | None
    home: str | None
    request_cwd: str | None
    variables: dict[str, list[str]] = field(default_factory=dict)


class _Report:
    def __init__(self) -> None:
        self.found: list[Danger] = []

    def add(self, code: str, message: str) -> None:
        if all(d.code != code for d in self.found):
            self.found.append(Danger(code, message))


def dangers(line: str, cwd: str | None = None, home: str | None = None) -> list[Danger]:
    """Every danger found in `line` (empty list: nothing known to be destructive).

    `cwd` and `home` are the directory the line would run in and the user's `$HOME`
    (absolute paths; None when unknown). Each danger code is reported once.
    """
    report = _Report()
    if _FORK_BOMB.search(line):
        report.add(
            "fork-bomb",
            "fork bomb: this defines a function that spawns itself until the machine hangs",
        )
    scope = _Scope(_clean_dir(cwd), _clean_dir(home), _clean_dir(cwd))
    _check_sequence(parse(line).commands, scope, report, depth=0)
    return report.found


def classify(line: str, cwd: str | None = None, home: str | None = None) -> list[str]:
    """The danger messages for `line`, one line each."""
    return [d.message for d in dangers(line, cwd, home)]


def _clean_dir(path: str | None) -> str | None:
    if not path or not path.startswith("/"):
        return None
    return "/" + "/".join(p for p in path.split("/") if p and p != ".")


# ----------------------------------------------------------------------------- sequences


def _check_sequence(
    commands: Sequence[SimpleCommand], scope: _Scope, report: _Report, depth: int
) -> None:
    """Check commands that run one after another, following `cd` and assignments."""
    if depth > 8:
        return
    pipeline: list[SimpleCommand] = []
    for command in commands:
        pipeline.append(command)
        _check_command(command, pipeline, scope, report, depth)
        if command.separator not in {"|", "|&"}:
            _check_pipeline(pipeline, scope, report, depth)
            pipeline = []
        _follow(command, scope)
    if pipeline:
        _check_pipeline(pipeline, scope, report, depth)


def _follow(command: SimpleCommand, scope: _Scope) -> None:
    """Update `scope` for what `command` changes for the commands after it."""
    if command.name == "cd" and command.separator not in {"|", "|&", "&"}:
        targets = [w for w in command.operands if w != "-"] or ["~"]
        paths = _paths(targets[0], scope)
        if len(paths) == 1 and paths[0].anchor == "/" and not paths[0].has_glob:
            scope.cwd = str(paths[0])
        elif len(paths) == 1 and paths[0].anchor == "~" and not paths[0].parts:
            scope.cwd = scope.home
        else:
            scope.cwd = None
    elif command.keywords[:1] == ("for",) and len(command.words) >= 2:
        words = list(command.words)
        values = words[3:] if words[2:3] == ["in"] else []
        scope.variables[words[1]] = values
    elif (not command.program and command.assignments) or command.name in _DECLARERS:
        words = list(command.assignments if not command.program else ())
        if command.name in _DECLARERS:
            words += [w for w in command.operands if "=" in w]
        for assignment in words:
            name, _, value = assignment.partition("=")
            scope.variables[name.rstrip("+")] = [value]


def _expand_variables(word: str, scope: _Scope) -> list[str]:
    """`word` with the line's own variables (`X=/`, `for X in ...`) put in, one per value."""
    words = [word]
    for name, values in scope.variables.items():
        pattern = re.compile(r"\$(?:\{" + re.escape(name) + r"\}|" + re.escape(name) + r"\b)")
        if not pattern.search(word):
            continue
        # a plain-string replacement would read backslashes in the value as escapes
        words = [pattern.sub(v.replace("\\", "\\\\"), w) for w in words for v in values[:16]]
    return words


def _paths(word: str, scope: _Scope) -> list[Path]:
    out: list[Path] = []
    for expanded in _expand_variables(word, scope):
        out.extend(resolve(expanded, scope.cwd, scope.home))
    return out


def _judge(word: str, scope: _Scope, *, contents: bool = True) -> Verdict | None:
    """Why losing what `word` names would be a disaster (None: it would not)."""
    for path in _paths(word, scope):
        verdict = protected(path, scope.cwd, scope.home, contents=contents)
        if verdict is None and scope.request_cwd and scope.request_cwd != scope.cwd:
            verdict = protected(path, scope.request_cwd, scope.home, contents=contents)
        if verdict is not None:
            return verdict
    return None


def _targets(words: Iterable[str], scope: _Scope) -> list[Path]:
    return [p for w in words for p in _paths(w, scope)]


# ----------------------------------------------------------------------------- places


def _is_home(parts: tuple[str, ...], scope: _Scope, anchor: str) -> bool:
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


def dotfile(path: Path, scope: _Scope) -> bool:
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


def _overwrite(
    path: Path, scope: _Scope, report: _Report, how: str, *, critical: bool = False
) -> None:
    """Report `how` (a verb phrase) replacing the contents of `path`, if that path matters.

    `critical`: only the system files a machine cannot boot or log in without count (cp, mv
    and ln install configuration files into /etc subdirectories all the time).
    """
    if path.parts and _BACKUP_NAME.search(path.parts[-1]):
        return  # a backup copy (`x.bak`, `x.new`): a new file beside the real one
    if is_device(path):
        report.add("device-write", f"{how} the disk device {path}")
    elif dotfile(path, scope):
        report.add("dotfile-overwrite", f"{how} {path} (use >> to append)")
    elif system_file(path, critical=critical):
        report.add("system-overwrite", f"{how} the system file {path}")


# ----------------------------------------------------------------------------- commands


def _check_command(
    command: SimpleCommand,
    pipeline: list[SimpleCommand],
    scope: _Scope,
    report: _Report,
    depth: int,
) -> None:
    name = command.name
    for redirect in command.redirects:
        if redirect.op in {">", ">|", "&>", "<>"} or (
            redirect.op == ">&" and not redirect.target.isdigit() and redirect.target != "-"
        ):
            for path in _paths(redirect.target, scope):
                _overwrite(path, scope, report, "overwrites")
        elif redirect.op in {">>", "&>>"}:
            for path in _paths(redirect.target, scope):
                if is_device(path):
                    report.add("device-write", f"writes directly to the device {path}")
    check = _CHECKS.get(name)
    if check is not None:
        check(command, scope, report)
    elif _FORMATTERS.match(name):
        _check_format(command, scope, report)
    elif name.startswith(("python", "perl", "ruby", "node", "php")):
        _check_code(command, scope, report, depth)
    # The commands this one runs: `sh -c` bodies and `find -exec` / `xargs` commands run in
    # this scope; substitutions run in a copy (a `cd` inside `$(...)` stays there).
    nested = [c for c in command.nested if c.via not in _SUBSTITUTIONS]
    substituted = [c for c in command.nested if c.via in _SUBSTITUTIONS]
    if nested:
        inner = replace(scope, variables=dict(scope.variables))
        _check_sequence(nested, inner, report, depth + 1)
    if substituted:
        _check_sequence(
            substituted, replace(scope, variables=dict(scope.variables)), report, depth + 1
        )
    if name in _CODE_RUNNERS and _runs_download(command):
        report.add(
            "pipe-to-shell", "runs a script downloaded from the network without showing it first"
        )
    if name == "xargs":
        _check_xargs(command, pipeline, scope, report)


def _runs_download(command: SimpleCommand) -> bool:
    """Does `command` (a shell, eval, source) take its code from a download substitution?

    `bash <(curl ...)`, `eval "$(curl ...)"`, `sh -c "$(wget -O- ...)"`: the downloader sits
    in a substitution of the runner itself or of the program word of its `-c`/eval body.
    """
    for child in command.nested:
        if child.via in _SUBSTITUTIONS and _feeds_download(child):
            return True
        # the body's program word is itself the substitution: `sh -c "$(curl ...)"`
        body_is_substitution = child.via in {"-c", "eval"} and child.program[:1] in {"$", "<", "`"}
        if body_is_substitution and any(_feeds_download(c) for c in child.nested):
            return True
    return False


def _feeds_download(command: SimpleCommand) -> bool:
    return command.name in _DOWNLOADERS or _is_decoder(command)


def _is_decoder(command: SimpleCommand) -> bool:
    """`base64 -d`, `xxd -r`: code that the reader cannot see before it runs."""
    flags = command.flag_names()
    if command.name in {"base64", "base32", "basenc"}:
        return bool(flags & {"-d", "-D", "--decode"})
    if command.name == "xxd":
        return "-r" in flags
    if command.name == "openssl":
        return "base64" in command.operands and "-d" in command.args
    return False


def _reads_code_from_stdin(command: SimpleCommand) -> bool:
    """A shell or interpreter that runs what arrives on stdin (`| sh`, `| python3 -`)."""
    if command.name not in INTERPRETERS and not command.name.startswith(("python", "perl")):
        return False
    flags = command.flag_names()
    code_flags = {"-c", "-e", "-E", "-m"} | ({"-r"} if command.name == "php" else set())
    if flags & code_flags:
        return False
    if command.name in SHELLS and "-s" in flags:
        return True
    return not command.operands or command.operands[0] in {"-", "/dev/stdin"}


def _check_pipeline(
    pipeline: list[SimpleCommand], scope: _Scope, report: _Report, depth: int
) -> None:
    """`curl ... | sh`, `base64 -d | sh`, `echo 'rm -rf /' | sh`."""
    for index, command in enumerate(pipeline[1:], start=1):
        if not _reads_code_from_stdin(command):
            continue
        upstream = pipeline[:index]
        source = next((c for c in upstream if c.name in _DOWNLOADERS), None)
        if source is not None:
            report.add(
                "pipe-to-shell", f"pipes a download from {source.name} straight into {command.name}"
            )
        elif any(_is_decoder(c) for c in upstream):
            report.add("pipe-to-shell", f"runs decoded (hidden) code with {command.name}")
        elif command.name in SHELLS and upstream[-1].name in {"echo", "printf"} and depth < 8:
            _check_text(" ".join(upstream[-1].operands), scope.cwd, scope.home, report)


# -- deleting


def _check_text(text: str, cwd: str | None, home: str | None, report: _Report) -> None:
    """The dangers of command text that runs elsewhere or later (ssh, alias), as our own."""
    for finding in dangers(text, cwd, home):
        report.add(finding.code, finding.message)


def _check_ssh(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """`ssh host 'rm -rf ~'`: the remote command, judged with the remote cwd/home unknown."""
    if not command.operands:
        return
    args = list(command.args)
    host = args.index(command.operands[0])
    if host + 1 < len(args):
        _check_text(" ".join(args[host + 1 :]), None, None, report)


def _check_alias(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """`alias ls='rm -rf ~'`: the body runs the next time the name is typed."""
    for word in command.operands:
        name, sep, body = word.partition("=")
        if sep and name:
            _check_text(body, scope.cwd, scope.home, report)


def _check_rm(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    _judge_delete(command, command.operands, scope, report)


def _judge_delete(
    command: SimpleCommand, operands: Sequence[str], scope: _Scope, report: _Report
) -> None:
    flags = command.flag_names()
    recursive = bool(flags & {"-r", "-R", "--recursive"})
    if "--no-preserve-root" in flags:
        report.add("rm-broad", "recursive delete with --no-preserve-root")
        return
    for word in operands:
        verdict = _judge(word, scope)
        if verdict is not None and verdict.kind == "cwd" and _asks(command):
            continue  # `rm -ri *` here: every file is confirmed first
        if verdict is not None and recursive:
            report.add("rm-broad", f"recursive delete of {verdict.label}")
            return
        # without -r only files go, but a glob over / or $HOME still takes all of them
        if (
            verdict is not None
            and verdict.kind != "cwd"
            and any(p.parts and matches_everything(p.parts[-1]) for p in _paths(word, scope))
        ):
            report.add("rm-broad", f"deletes {verdict.label}")
            return
        for path in _paths(word, scope):
            if system_file(path):
                report.add("rm-broad", f"deletes the system file {path}")
                return


def _check_find(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
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


def _find_tests(args: Sequence[str]) -> list[str]:
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


def _judge_find(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """find deleting under `/` or a system tree whatever its tests; under $HOME unless it
    picks names (-name, -path...); under the cwd only when it picks nothing at all."""
    roots: list[str] = []
    args = list(command.args)
    while args and args[0] in {"-L", "-H", "-P"}:  # options before the start points
        args.pop(0)
    for arg in args:
        if arg.startswith(("-", "(", "!")):
            break
        roots.append(arg)
    tests = _find_tests(command.args)
    by_name = any(t in _FIND_NARROWING for t in tests)
    for root in roots or ["."]:
        verdict = _judge(root, scope, contents=True)
        if verdict is None:
            continue
        broad = verdict.kind == "root" or any(
            len(p.parts) <= 1 or system_file(p) for p in _paths(root, scope) if p.anchor == "/"
        )
        if (
            (verdict.kind in {"root", "system"} and broad)
            or (verdict.kind != "cwd" and not by_name)
            or not tests
        ):
            report.add("rm-broad", f"deletes files under {verdict.label}")
            return


def _check_xargs(
    command: SimpleCommand, pipeline: list[SimpleCommand], scope: _Scope, report: _Report
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


def _check_rsync(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    if not any(f.name.startswith("--delete") for f in command.flags) or len(command.operands) < 2:
        return
    verdict = _judge(command.operands[-1].rstrip("/") + "/*", scope)
    if verdict is not None:
        report.add("rm-broad", f"rsync --delete removes {verdict.label}")


# -- moving and writing


def _destinations(sources: Sequence[str], dest: str, scope: _Scope) -> list[str]:
    """Where cp/mv/ln put their sources: `dest` itself, or `dest/NAME` for a directory.

    A directory is known from a trailing "/", or from being a protected place ($HOME, /etc).
    """
    is_dir = dest.endswith("/") or _judge(dest, scope, contents=False) is not None
    if not is_dir:
        return [dest]
    return [dest.rstrip("/") + "/" + s.rstrip("/").rsplit("/", 1)[-1] for s in sources]


def _check_mv(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    ops = command.operands
    if len(ops) < 2:
        return
    sources, dest = ops[:-1], ops[-1]
    if dest == "/dev/null":
        report.add("mv-devnull", "moves files to /dev/null, which destroys them")
        return
    for word in sources:
        verdict = _judge(word, scope)
        if verdict is not None and verdict.kind != "cwd":
            report.add("move-broad", f"moves {verdict.label} away")
            return
        # renaming a file to its backup name keeps it (until a new one is written there)
        moved = [p for p in _paths(word, scope) if system_file(p, critical=True)]
        if moved and not _BACKUP_NAME.search(dest):
            report.add("move-broad", f"moves the system file {moved[0]} away")
            return
    _check_copy_dest(sources, dest, scope, report)


def _check_copy(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    if len(command.operands) >= 2:
        _check_copy_dest(command.operands[:-1], command.operands[-1], scope, report)


def _check_copy_dest(sources: Sequence[str], dest: str, scope: _Scope, report: _Report) -> None:
    named = _destinations(sources, dest, scope)
    into_directory = named != [dest]
    for target in named:
        for path in _paths(target, scope):
            # a file copied into a directory is new there unless its name is a dotfile's
            if into_directory and not dotfile(path, scope):
                continue
            _overwrite(path, scope, report, "replaces", critical=True)


def _check_ln(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    flags = command.flag_names()
    if flags & {"-f", "--force"} and len(command.operands) >= 2:
        _check_copy_dest(command.operands[:-1], command.operands[-1], scope, report)


def _check_download_target(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """`curl -o ~/.zshrc URL`, `wget -O /etc/hosts URL`: a download written over a file."""
    outputs = {"-o", "--output"} if command.name != "wget" else {"-O", "--output-document"}
    for flag in command.flags:
        if flag.name in outputs and flag.value and flag.value != "-":
            for path in _paths(flag.value, scope):
                _overwrite(path, scope, report, f"{command.name} overwrites")


def _check_tee(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    if command.flag_names() & {"-a", "--append"}:
        return
    for path in _targets(command.operands, scope):
        _overwrite(path, scope, report, "overwrites")


def _check_truncate(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    for path in _targets(command.operands, scope):
        _overwrite(path, scope, report, "empties")


def _check_dd(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    for word in command.operands:
        if word.startswith("of="):
            for path in _paths(word[3:], scope):
                _overwrite(path, scope, report, "dd overwrites")


# -- disks


def _check_disk_tool(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """shred, fdisk, parted, sgdisk...: modifying a disk device (not just printing it)."""
    if command.flag_names() & _PARTITION_READ_ONLY:
        return
    if command.name == "parted" and any(o in {"print", "p"} for o in command.operands[1:]):
        return
    devices = [p for p in _targets(command.operands, scope) if is_device(p)]
    if devices:
        report.add("device-write", f"{command.name} modifies the disk {devices[0]}")


def _check_format(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """mkfs and friends on a disk device (or on a variable that may be one); an image file
    or a swap file is a new filesystem, not an erased one."""
    for word in command.operands:
        paths = _paths(word, scope)
        if word.startswith("$") or any(is_device(p) for p in paths):
            report.add("device-format", f"{command.name} erases the filesystem on {word}")
            return


def _check_destructive_test(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """badblocks -w and hdparm --security-erase / --write-sector overwrite a whole disk."""
    flags = command.flag_names()
    writes = (
        "-w" in flags
        if command.name == "badblocks"
        else any(
            f.startswith(("--security-erase", "--write-sector", "--trim-sector")) for f in flags
        )
    )
    devices = [p for p in _targets(command.operands, scope) if is_device(p)]
    if writes and devices:
        report.add("device-write", f"{command.name} overwrites the disk {devices[0]}")


def _check_diskutil(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    if command.operands and _DISKUTIL_ERASE.match(command.operands[0]):
        report.add("device-format", f"diskutil {command.operands[0]} erases a disk")


# -- permissions


def _check_chmod(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    flags = command.flag_names()
    recursive = bool(flags & {"-R", "--recursive"})
    ops = command.operands
    targets = ops if any(f.name.startswith("--reference") for f in command.flags) else ops[1:]
    to_self = command.name != "chmod" and bool(ops) and _is_self(ops[0], scope)
    for word in targets:
        verdict = _judge(word, scope)
        if verdict is None:
            writable = command.name == "chmod" and bool(ops) and _world_writable(ops[0])
            hit = next((p for p in _paths(word, scope) if writable and system_file(p)), None)
            if hit is not None:
                report.add("chmod-recursive", f"makes the system file {hit} world-writable")
                return
            continue
        paths = _paths(word, scope)
        if command.name == "chmod" and verdict.kind == "home" and ops and _private_mode(ops[0]):
            continue  # `chmod -R 700 ~/.ssh`: the owner keeps everything, others lose access
        if (
            verdict.kind == "cwd"
            or (to_self and all(_within_home(p, scope) for p in paths))
            or (command.name != "chmod" and ops and all(_owner_of_home(ops[0], p) for p in paths))
        ):
            continue
        if recursive or (verdict.kind in {"root", "system"} and "*" not in word):
            mode = "recursive " if recursive else ""
            report.add("chmod-recursive", f"{mode}{command.name} on {verdict.label}")
            return


def _check_setfacl(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    if not command.flag_names() & {"-R", "--recursive"}:
        return
    for word in command.operands:
        verdict = None if ":" in word else _judge(word, scope)
        if verdict is not None and verdict.kind != "cwd":
            report.add("chmod-recursive", f"recursive setfacl on {verdict.label}")
            return


def _is_self(owner: str, scope: _Scope) -> bool:
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


def _within_home(path: Path, scope: _Scope) -> bool:
    """`path` is $HOME or below it (not a parent of it)."""
    if path.anchor == "~":
        return ".." not in path.parts
    home = tuple(p for p in (scope.home or "").split("/") if p)
    return bool(home) and path.anchor == "/" and path.parts[: len(home)] == home


def _private_mode(mode: str) -> bool:
    """A mode that leaves the owner full access and gives nobody else write: 700, 755,
    go-rwx."""
    if mode.isdigit() and len(mode) in {3, 4}:
        owner, group, other = (int(d) for d in mode[-3:])
        return owner == 7 and not (group | other) & 2
    return bool(re.fullmatch(r"(?:[go]+-[rwxXst]+,?)+", mode))


def _world_writable(mode: str) -> bool:
    if mode.isdigit():
        return int(mode[-1]) & 2 == 2
    return bool(re.search(r"(?:^|,)[ao]*[+=][rwxXst]*w", mode)) and not mode.startswith("u")


# -- code given to interpreters


def _check_code(command: SimpleCommand, scope: _Scope, report: _Report, depth: int) -> None:
    """`python -c 'shutil.rmtree("/")'`, `perl -e 'system("rm -rf ~")'` and friends."""
    code_flags = {"-c", "-e", "-E", "-r"} if command.name == "php" else {"-c", "-e", "-E"}
    code = next((f.value for f in command.flags if f.name in code_flags and f.value), None)
    if code is None:
        args = list(command.args)
        for i, arg in enumerate(args[:-1]):
            if arg in code_flags:
                code = args[i + 1]
                break
    if not code or depth >= 8:
        return
    for m in _CODE_DELETE.finditer(code):
        arg = _call_argument(code, m.end())
        words = ["~"] if _CODE_HOME.search(arg) else [s for _q, s in _STRING.findall(arg)]
        for word in words:
            verdict = _judge(word, scope)
            if verdict is not None:
                report.add("rm-broad", f"{command.name} deletes {verdict.label}")
                return
    if _CODE_EVAL_FETCH.search(code):
        report.add("pipe-to-shell", f"{command.name} runs code it downloads without showing it")
    shell_texts = [m.group("cmd") for m in _CODE_SHELL.finditer(code)]
    if not command.name.startswith(("python", "node")):
        shell_texts += re.findall(r"`([^`]+)`", code)  # perl, ruby, php: backticks run a shell
    for text in shell_texts:
        _check_text(text, scope.cwd, scope.home, report)


def _call_argument(code: str, start: int) -> str:
    """The first argument of a call whose "(" ends just before `start`, nesting included."""
    depth = 0
    for i in range(start, min(len(code), start + 300)):
        c = code[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                return code[start:i]
            depth -= 1
        elif c == "," and depth == 0:
            return code[start:i]
    return code[start : start + 300]


# -- everything else


def _check_git(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
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
        and (not rest or any(_judge(p, scope) is not None for p in rest))
    ):
        report.add("discard-changes", "git clean -f deletes untracked files")
    elif sub == "checkout" and flags & {"-f", "--force"}:
        report.add("discard-changes", "git checkout -f discards uncommitted changes")
    elif sub == "stash" and rest[:1] == ["clear"]:
        report.add("discard-changes", "git stash clear deletes every stash")
    elif (
        sub in {"checkout", "restore"}
        and not flags & {"--staged", "-S", "-b", "-B"}
        and any(_judge(p, scope) is not None for p in rest if p in {".", "./", ":/", "*"})
    ):
        report.add("discard-changes", f"git {sub} . discards every uncommitted change")


def _check_push(
    command: SimpleCommand, rest: Sequence[str], flags: frozenset[str], report: _Report
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
    if (forced and (not refspecs or main or "--mirror" in flags)) or (leased and main):
        report.add("force-push", "force push that can overwrite the history of main/master")


def _check_docker(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
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
        c.via in _SUBSTITUTIONS
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


def _check_sql(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    """`mysql -e 'DROP DATABASE x'`, `psql -c 'TRUNCATE t'`, a DELETE without WHERE."""
    texts = [f.value for f in command.flags if f.value] + list(command.operands)
    texts += [r.target for r in command.redirects if r.op == "<<<"]
    for text in texts:
        m = _SQL_DESTROY.search(text)
        if m is not None:
            report.add("data-destroy", f"{command.name} runs {m.group(0).strip()}")
            return


def _check_store(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
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


def _check_shutdown(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    ops = list(command.operands)
    name = command.name
    if (
        (name in {"shutdown", "reboot", "halt", "poweroff"} and "-c" not in command.flag_names())
        or (name in {"init", "telinit"} and ops[:1] in (["0"], ["6"]))
        or (name == "systemctl" and ops[:1] in (["poweroff"], ["reboot"], ["halt"], ["kexec"]))
    ):
        report.add("shutdown", "shuts down or restarts the machine")


def _check_crontab(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    if "-r" in command.flag_names():
        report.add("crontab-remove", "crontab -r removes every cron job")


def _check_kill(command: SimpleCommand, scope: _Scope, report: _Report) -> None:
    args = list(command.args)
    if args[:1] == ["-s"] or args[:1] == ["-n"]:
        args = args[2:]
    elif args and args[0].startswith("-") and args[0] != "-1":
        args = args[1:]  # the signal: -9, -KILL, -SIGTERM
    if "-1" in args:
        report.add("kill-all", "kill -1 signals every process you own")


_CHECKS = {
    "rm": _check_rm,
    "unlink": _check_rm,
    "find": _check_find,
    "rsync": _check_rsync,
    "mv": _check_mv,
    "cp": _check_copy,
    "install": _check_copy,
    "ln": _check_ln,
    "tee": _check_tee,
    "truncate": _check_truncate,
    "dd": _check_dd,
    "shred": _check_disk_tool,
    "diskutil": _check_diskutil,
    "chmod": _check_chmod,
    "chown": _check_chmod,
    "setfacl": _check_setfacl,
    "badblocks": _check_destructive_test,
    "hdparm": _check_destructive_test,
    "curl": _check_download_target,
    "wget": _check_download_target,
    "chgrp": _check_chmod,
    "git": _check_git,
    "docker": _check_docker,
    "docker-compose": _check_docker,
    "ssh": _check_ssh,
    "alias": _check_alias,
    "mysql": _check_sql,
    "mariadb": _check_sql,
    "psql": _check_sql,
    "sqlite3": _check_sql,
    "redis-cli": _check_store,
    "kubectl": _check_store,
    "oc": _check_store,
    "terraform": _check_store,
    "tofu": _check_store,
    "pulumi": _check_store,
    "aws": _check_store,
    "gsutil": _check_store,
    "gcloud": _check_store,
    "podman": _check_docker,
    "shutdown": _check_shutdown,
    "reboot": _check_shutdown,
    "halt": _check_shutdown,
    "poweroff": _check_shutdown,
    "init": _check_shutdown,
    "telinit": _check_shutdown,
    "systemctl": _check_shutdown,
    "crontab": _check_crontab,
    "kill": _check_kill,
    **dict.fromkeys(_PARTITIONERS, _check_disk_tool),
}
