"""Danger rules for code a line runs without showing it, and code given as text.

Downloads or decoded data fed to a shell or interpreter (`curl | sh`, `bash <(curl ...)`,
`eval "$(wget ...)"`, `base64 -d | sh`); the code strings of `python -c` / `perl -e` /
`node -e` (deleting calls, shell calls); command text that runs elsewhere or later
(`ssh host '...'`, `alias x='...'`), judged like a line of its own.
"""

from __future__ import annotations

import re

from shellfish.shell.danger.files import system_file
from shellfish.shell.danger.scope import SUBSTITUTIONS, Report, Scope, judge, paths
from shellfish.shell.grammar import INTERPRETERS, SHELLS
from shellfish.shell.syntax import SimpleCommand

# Programs that fetch from the network (their output is code nobody has read).
_DOWNLOADERS = frozenset({"curl", "wget", "fetch", "http", "https", "aria2c", "xh", "curlie"})

# Programs that run code given as text: a shell, `eval`, `source`.
CODE_RUNNERS = INTERPRETERS | {"eval", "source", "."}

# `f(){ f|f& };f` under any name.
FORK_BOMB = re.compile(r"([\w:.]+)\s*\(\)\s*\{[^}]*\1\s*\|\s*&?\s*\1\s*&[^}]*\}\s*;?\s*\1")

# Deleting calls of scripting languages (their first argument is judged as a path).
_CODE_DELETE = re.compile(
    r"\b(?:rmtree|rm_rf|rm_r|remove_dir|remove_entry_secure|rmSync|rmdirSync|removedirs"
    r"|rimraf(?:\.sync)?|remove_tree|rmtree_p)\s*\("
)

# Calls that run a shell command given as a string literal (judged as a line of its own).
_CODE_SHELL = re.compile(
    r"\b(?:system|popen|run|call|check_call|check_output|Popen|exec|execSync|spawnSync"
    r"|getoutput|getstatusoutput|qx)\s*(?P<paren>\()?(?=\s*\[?\s*['\"`])"
)

# The home directory as scripting languages spell it.
_CODE_HOME = re.compile(
    r"(?:Path\.home\(\)|expanduser\(\s*['\"]~['\"]\s*\)|\.homedir\(\)|Dir\.home"
    r"|ENV\[['\"]HOME['\"]\]|environ\[['\"]HOME['\"]\]|process\.env\.HOME"
    r"|getenv\(\s*['\"]HOME['\"]\s*\)|\$ENV\{HOME\})"
)
# The current directory as scripting languages spell it.
_CODE_CWD = re.compile(r"(?:getcwd\(\)|Path\.cwd\(\)|process\.cwd\(\)|Dir\.pwd|getcwd\b)")

# eval/exec of what a URL returns: `eval(file_get_contents("https://..."))`.
_CODE_EVAL_FETCH = re.compile(
    r"\b(?:eval|exec|Function|instance_eval)\s*\(.{0,80}?"
    r"(?:urlopen|urlretrieve|file_get_contents\s*\(\s*['\"]https?:|requests\.get|URI\.open"
    r"|Net::HTTP|https?\.get|fetch\s*\(|LWP::Simple|get\s*\(\s*['\"]https?:)"
)

# Single-file deletes (judged on system files only).
_CODE_REMOVE = re.compile(
    r"\b(?:os\.remove|os\.unlink|unlinkSync|unlink|File\.delete|\.unlink)\s*\("
)
# `fork while fork` (perl), `while True: os.fork()` (python), `loop { fork }` (ruby).
_CODE_FORK_BOMB = re.compile(
    r"fork\s+while\s+fork|while\s*\(?\s*(?:1|true|True)\s*\)?\s*[:{]?\s*(?:os\.)?fork\s*\("
    r"|loop\s*\{\s*fork"
)
# A quoted string literal.
_STRING = re.compile(r"""(['"`])(.*?)\1""")


def runs_download(command: SimpleCommand) -> bool:
    """Does `command` (a shell, eval, source) take its code from a download substitution?

    `bash <(curl ...)`, `eval "$(curl ...)"`, `sh -c "$(wget -O- ...)"`: the downloader sits
    in a substitution of the runner itself or of the program word of its `-c`/eval body.
    """
    for child in command.nested:
        if child.via in SUBSTITUTIONS and _feeds_download(child):
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


def check_pipeline(pipeline: list[SimpleCommand], scope: Scope, report: Report) -> None:
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
        elif command.name in SHELLS and upstream[-1].name in {"echo", "printf"}:
            check_text(" ".join(upstream[-1].operands), scope.cwd, scope.home, report)


def check_text(text: str, cwd: str | None, home: str | None, report: Report) -> None:
    """The dangers of command text that runs elsewhere or later (ssh, alias), as our own."""
    from shellfish.shell.danger import dangers  # the package imports this module

    for finding in dangers(text, cwd, home):
        report.add(finding.code, finding.message)


def check_ssh(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`ssh host 'rm -rf ~'`: the remote command, judged with the remote cwd/home unknown."""
    if not command.operands:
        return
    args = list(command.args)
    host = args.index(command.operands[0])
    if host + 1 < len(args):
        check_text(" ".join(args[host + 1 :]), None, None, report)


def check_alias(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`alias ls='rm -rf ~'`: the body runs the next time the name is typed."""
    for word in command.operands:
        name, sep, body = word.partition("=")
        if sep and name:
            check_text(body, scope.cwd, scope.home, report)


def check_code(command: SimpleCommand, scope: Scope, report: Report) -> None:
    """`python -c 'shutil.rmtree("/")'`, `perl -e 'system("rm -rf ~")'` and friends."""
    code_flags = {"-c", "-e", "-E", "-r"} if command.name == "php" else {"-c", "-e", "-E"}
    code = next((f.value for f in command.flags if f.name in code_flags and f.value), None)
    if code is None:
        args = list(command.args)
        for i, arg in enumerate(args[:-1]):
            if arg in code_flags:
                code = args[i + 1]
                break
    if not code:
        return
    for m in _CODE_DELETE.finditer(code):
        arg = _call_argument(code, m.end())
        words = [s for _q, s in _STRING.findall(arg)]
        if _CODE_HOME.search(arg):
            words = ["~"]
        elif _CODE_CWD.search(arg):
            words = ["."]
        for word in words:
            verdict = judge(word, scope)
            if verdict is not None:
                report.add("rm-broad", f"{command.name} deletes {verdict.label}")
                return
    if _CODE_FORK_BOMB.search(code):
        report.add("fork-bomb", f"{command.name} forks itself without end until the machine hangs")
    for m in _CODE_REMOVE.finditer(code):
        for word in (s for _q, s in _STRING.findall(_call_argument(code, m.end()))):
            hit = next((p for p in paths(word, scope) if system_file(p)), None)
            if hit is not None:
                report.add("rm-broad", f"{command.name} deletes the system file {hit}")
    if _CODE_EVAL_FETCH.search(code):
        report.add("pipe-to-shell", f"{command.name} runs code it downloads without showing it")
    shell_texts = []
    for m in _CODE_SHELL.finditer(code):
        # the argument's string literals joined: `os.system("rm -rf " + "/")`
        argument = _call_argument(code, m.end()) if m.group("paren") else code[m.end() :]
        if not m.group("paren"):
            argument = argument.split(";", 1)[0]  # perl `system "..."`: up to the statement end
        # a list is argv (`run(["rm", "-rf", "/"])`): its strings are separate words
        joint = " " if argument.lstrip().startswith("[") else ""
        shell_texts.append(joint.join(text for _q, text in _STRING.findall(argument)))
    if not command.name.startswith(("python", "node")):
        shell_texts += re.findall(r"`([^`]+)`", code)  # perl, ruby, php: backticks run a shell
    for text in shell_texts:
        check_text(text, scope.cwd, scope.home, report)


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
