"""The NLC2CMD metric (NeurIPS 2020 competition) plus exact and template match.

The competition scores one prediction P against the reference C as follows (its
``metric_utils.compute_metric``): take the utilities of both commands in order, pad the shorter
list with nothing, and for each aligned pair (u, u*)

    S = conf * ( I[u == u*] * (1 + S_F) / 2  -  I[u != u*] )
    S_F = (2 |F ∩ F*| - |F ∪ F*|) / max(1, |F|, |F*|)      (1.0 when neither has flags)

where F, F* are the sets of flag names of u and u* (including the flags of the commands nested
in it: ``find -exec``, ``xargs``, ``$(...)``); the command's score is the mean over the pairs
(0.0 for two empty commands). It lies in [-1, 1]. Over up to k predictions, the competition
takes the best score if any is positive, else the mean.

"The utilities" are what the competition's parser (the NL2Bash ``bashlint`` grammar) makes of
the command, quirks included, and `nlc2cmd_structure` reproduces it on top of
`shellfish.shell.syntax` with the per-utility grammar in `shellfish.eval.nlc2cmd_grammar`:

- the text is first normalised the way the scorer does (every ``sudo`` substring removed,
  some typo fixes, ``tar xzf`` -> ``tar -xzf``);
- a command the scorer cannot parse has no utilities at all: a utility outside its grammar,
  a list (``a && b``, ``a; b``), a compound command or subshell, an assignment or a
  redirection in the wrong place, an unknown long flag or an unknown letter in a flag bundle;
- an unquoted word where the grammar wants a command string (``watch CMD``) goes to the next
  slot; a flag whose value expands (``--tmpdir=$d``) is still a flag; in an assignment,
  ``$(...)`` counts even inside single quotes;
- flags are split by that grammar (``-la`` -> -l -a only when both are flags; ``head -5`` is
  the flag ``-``; ``find``'s ``-and``/``-or``/``-not``/``!``/``-prune`` are operators, not
  flags; ``-exec`` is named with its terminator, ``-exec::;``); an unknown short flag becomes
  an argument when one fits; ``egrep``/``fgrep`` are grep with -E/-F; ``xargs`` running a
  command without ``-I`` gets one.

`tests/test_eval_metric.py` checks every pair of the competition's reference scores (kept
beside the project, 3,653 pairs) against this module: all agree to 1e-6.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from shellfish.shell.syntax import Expansion, SimpleCommand, parse, simple_commands

# ------------------------------------------------------------------ the scorer's text fixes

# In the order the scorer applies them (plain substring replacements).
_SURFACE_FIXES: tuple[tuple[str, str], ...] = (
    ("sudo", ""),
    ("/usr/bin/find", "find"),
    ("/bin/find", "find"),
    ("/usr/bin/grep", "grep"),
    ("/bin/rm", "rm"),
    ("/bin/mv", "mv"),
    ("'{}'", "{}"),
    ('"{}"', "{}"),
    ("-i{}", "-I {}"),
    ("-i%", "-I %"),
    ("-I{}", "-I {}"),
    (" [] ", " {} "),
    ("-L.", "-L"),
    ("-mitime", "-mtime"),
    ("-dev", "-xdev"),
    ("-regex-type", "-regextype"),
    (" ( ", " \\( "),
    (" ) ", " \\) "),
    ("-\\(", "\\("),
    ("-\\)", "\\)"),
    ('"\\)', " \\)"),
    ("\\(-", "\\( -"),
    ("e\\)", "e \\)"),
    ("-\\!", "!"),
    ("\u2014 ", "-"),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("-\xd0\xbe", "-o"),
    ("\xe2\x80\x93 ", "-"),
    ("\u2018", "'"),
    ("\u2019", "'"),
)
_LATE_FIXES: tuple[tuple[str, str], ...] = (
    ("/bin/echo", "echo"),
    (" exec sed ", " -exec sed "),
    (" xargs -iname ", " xargs "),
    (" -chour +1 ", " -cmin 60 "),
    (" -target-directory ", " --target-directory="),
    ("- perm", "-perm"),
    (" perm", " -perm"),
    ("'-rd\\n' ", ""),
)
_PROMPTS = (("$ ", ""), ("# ", ""), ("$find ", "find "), ("#find ", "find "))


def _surface(command: str) -> str:
    """The command as the scorer rewrites it before parsing."""
    cmd = command.replace("\n", " ").strip()
    for old, new in _SURFACE_FIXES:
        cmd = cmd.replace(old, new)
    cmd = re.sub("-prin($| )", "-print", cmd)
    for old, new in _LATE_FIXES:
        cmd = cmd.replace(old, new)
    for prefix, new in _PROMPTS:
        if cmd.startswith(prefix):
            cmd = new + cmd[len(prefix) :]
            break
    # the first argument of tar is always an option (`tar xzf` -> `tar -xzf`)
    if cmd.startswith("tar"):
        cmd = " " + cmd
    for hit in re.findall(r" tar \w", cmd):
        cmd = cmd.replace(hit, hit.replace(" tar ", " tar -"))
    return cmd.strip()


# ------------------------------------------------------------------------- the grammar

_OPEN = "__open__"  # a flag whose argument is the next word


@dataclass
class _Arg:
    """One argument slot: of a utility (positional) or of a flag."""

    kind: str  # "a" word, "c" quoted command string, "e" rest-of-line command, "x" exec
    keeps_taking: bool = False  # a space-separated list: stays available once filled
    attached_only: bool = False  # the value must be attached (`-i{}`)
    stops: str = ""  # exec: the words that end the command
    filled: bool = False
    next: _Arg | None = None  # the flag's following argument


def _arg(code: str) -> _Arg:
    if code.startswith("x"):
        return _Arg("x", stops=code[1:])
    return _Arg(
        code.lstrip("~")[:1],
        keeps_taking=code.endswith("..."),
        attached_only=code.startswith("~"),
    )


@dataclass(frozen=True)
class _Utility:
    flags: dict[str, tuple[str, ...]]  # name -> argument codes
    positionals: tuple[str, ...]


@cache
def _grammar() -> dict[str, _Utility]:
    from shellfish.eval.nlc2cmd_grammar import GRAMMAR, INFERRED

    out: dict[str, _Utility] = {}
    for name, spec in (GRAMMAR | INFERRED).items():
        flag_part, _, positional_part = spec.partition(" | ")
        flags: dict[str, tuple[str, ...]] = {}
        for token in flag_part.split():
            flag, _, args = token.partition(":")
            flags[flag] = tuple(args.split("/")) if args else ()
        out[name] = _Utility(flags, tuple(positional_part.split()))
    return out


def _flag_args(codes: tuple[str, ...]) -> _Arg | None:
    first: _Arg | None = None
    prev: _Arg | None = None
    for code in codes:
        arg = _arg(code)
        if prev is None:
            first = arg
        else:
            prev.next = arg
        prev = arg
    return first


# ------------------------------------------------------------------------- the parse


class _Unparsable(Exception):
    """The scorer's parser gives up on the whole command (it then has no utilities)."""


@dataclass
class _Node:
    """A utility in the scorer's tree: its own flags and the utilities nested in it."""

    name: str
    flags: list[str] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)
    direct: list[_Node] = field(default_factory=list)  # nested right under it (xargs' command)
    xargs_replace: list[str | None] = field(default_factory=list)  # -I values


@dataclass
class _Item:
    """One part of a simple command in source order: a word or a redirection."""

    raw: str = ""
    value: str = ""
    parts: tuple[Expansion, ...] = ()
    redirect: bool = False


_FLAGS = "flags"
_EOF = "eof"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_LOGIC_ANY = frozenset({"-and", "-or", "||", "&&", "-not", "-prune"})
_COMMAND_KINDS = frozenset({"$(", "`", "<(", ">("})


def _items(command: SimpleCommand) -> list[_Item]:
    by_position: dict[int, int] = {}
    for r in command.redirects:
        by_position[r.at] = by_position.get(r.at, 0) + 1
    out: list[_Item] = []
    for i, (raw, value) in enumerate(zip(command.raw_words, command.words, strict=False)):
        out += [_Item(redirect=True)] * by_position.get(i, 0)
        parts = command.expansions[i] if i < len(command.expansions) else ()
        out.append(_Item(raw, value, parts))
    out += [_Item(redirect=True)] * by_position.get(len(command.words), 0)
    return out


def _line(text: str, into: list[_Node]) -> None:
    """Parse a whole line (or a substitution's body) the scorer's way, appending its
    utilities to `into`; raise _Unparsable where the scorer gives up."""
    parsed = parse(text)
    commands = parsed.commands
    if parsed.problems or not commands:
        raise _Unparsable(parsed.problems)
    for c in commands:
        if c.keywords or c.subshell or (not c.words and not c.redirects):
            raise _Unparsable("compound command")
    separators = [c.separator for c in commands]
    if any(s not in ("|", "|&") for s in separators[:-1]) or separators[-1] not in ("", ";", "&"):
        raise _Unparsable("list")
    for c in commands:
        _command(_items(c), into, [])


def _assignment_parts(word: _Item) -> tuple[Expansion, ...]:
    """The expansions of an assignment word as the scorer's lexer finds them: it expands
    ``$(...)`` inside single quotes there too (``PS4='+$(date)'`` runs date for it)."""
    if "'" not in word.raw:
        return word.parts
    relexed = parse(word.raw.replace("'", '"')).commands
    return relexed[0].expansions[0] if relexed and relexed[0].expansions else word.parts


def _expansions(parts: tuple[Expansion, ...], into: list[_Node]) -> None:
    """A word with expansions given as an argument (or in the command's first position)."""
    if parts[0].kind in ("$", "~"):
        return  # a plain argument for the scorer
    for part in parts:
        if part.kind in _COMMAND_KINDS:
            _line(part.body, into)
        else:
            raise _Unparsable(f"unsupported expansion {part.kind}")


def _command(items: list[_Item], into: list[_Node], direct: list[_Node]) -> None:
    """One simple command; its utility (if any) is appended to `into` (and `direct`)."""
    if not items:
        return
    first = items[0]
    if first.redirect:
        raise _Unparsable("redirection first")
    if _ASSIGNMENT.match(first.raw):
        for part in _assignment_parts(first):
            if part.kind not in _COMMAND_KINDS:
                raise _Unparsable("assignment")
            _line(part.body, into)
        return
    if first.parts:
        _expansions(first.parts, into)
        return
    utility = _grammar().get(first.raw)
    if utility is None:
        raise _Unparsable(f"no grammar for {first.raw}")
    node = _Node(first.raw)
    into.append(node)
    direct.append(node)
    _Walk(node, utility).run(items[1:])
    _post_process(node)


class _Walk:
    """The scorer's walk over a command's words with the utility's grammar."""

    def __init__(self, node: _Node, utility: _Utility) -> None:
        self.node = node
        self.utility = utility
        self.positionals = [_arg(code) for code in utility.positionals]
        self.argument_only = False
        self.open_flag: int | None = None  # index in node.flags of a flag awaiting arguments
        self.states: list[object] = self._utility_states()

    def _utility_states(self) -> list[object]:
        states: list[object] = [] if self.argument_only else [_FLAGS]
        states += [p for p in self.positionals if not p.filled or p.keeps_taking]
        return [*states, _EOF]

    def _back_to_utility(self) -> None:
        self.open_flag = None
        self.states = self._utility_states()

    def run(self, items: list[_Item]) -> None:
        i = 0
        while i < len(items):
            item = items[i]
            consumed = self._step(items, i)
            if consumed:
                i += consumed
            elif item.redirect:
                i += 1  # a redirection no state takes is left out
            else:
                raise _Unparsable("unmatched word")
        if _EOF not in self.states:
            raise _Unparsable("incomplete command")

    def _step(self, items: list[_Item], i: int) -> int:
        """Consume items[i] (and maybe more); returns how many, 0 if nothing takes it."""
        item = items[i]
        for state in self.states:
            if state is _FLAGS:
                if item.redirect:
                    continue
                if self._operator(item.value) or self._flag(item.raw):
                    return 1
            elif isinstance(state, _Arg) and state.kind == "c" and not _quoted(item):
                if item.parts:  # `ssh host "$CMD"`: an argument like any other
                    _expansions(item.parts, self.node.children)
                    self._back_to_utility()
                    return 1
                continue  # an unquoted word is no command string: try the next slot
            elif isinstance(state, _Arg) and state.kind in ("c", "e", "x"):
                return self._nested(state, items, i)
            elif isinstance(state, _Arg):
                if item.redirect:
                    raise _Unparsable("redirection as an argument")
                if item.parts:
                    _expansions(item.parts, self.node.children)
                opened = None if self.open_flag is None else self.node.flags[self.open_flag]
                if opened == "-I" and self.node.xargs_replace:
                    self.node.xargs_replace[-1] = item.value  # the value of xargs' -I
                state.filled = True
                if state.next is not None:
                    self.states = [state.next]
                else:
                    self._back_to_utility()
                return 1
        return 0

    def _operator(self, word: str) -> bool:
        """find's parentheses and logic operators (not flags for the scorer)."""
        find = self.node.name == "find"
        if find and word in ("(", ")", "\\(", "\\)", "!", "-o", "-a", ","):
            return True
        return word in _LOGIC_ANY

    def _add_flag(self, name: str, value: str | None) -> None:
        self.node.flags.append(name)
        if name == "-I" and self.node.name == "xargs":
            self.node.xargs_replace.append(value)

    def _flag(self, token: str) -> bool:
        flags = self.utility.flags
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            if name not in flags:
                if name == "--":
                    self.argument_only = True
                    return False
                raise _Unparsable(f"unknown long flag {name}")
            if flags[name]:
                self._add_flag(name, value if eq and value else None)
                if not value:
                    self._open(name)
                return True
            if value:
                raise _Unparsable(f"{name} takes no argument")
            self._add_flag(name, None)
            return True
        if token in flags:
            args = flags[token]
            self._add_flag(token, None)
            if args and not _arg(args[0]).attached_only:
                self._open(token)
            return True
        head = token[:2]
        if head in flags:
            if flags[head]:
                self._add_flag(head, token[2:])
                return True
            self._add_flag(head, None)
            for j in range(2, len(token)):
                name = "-" + token[j]
                if name not in flags:
                    raise _Unparsable(f"unknown flag {name}")
                if flags[name] and j < len(token) - 1:
                    self._add_flag(name, token[j + 1 :])
                    break
                self._add_flag(name, None)
            return True
        for sign in "-+":
            if head.startswith(sign) and flags.get(sign):
                self._add_flag(sign, token[1:])
                return True
        return False

    def _open(self, name: str) -> None:
        first = _flag_args(self.utility.flags[name])
        self.open_flag = len(self.node.flags) - 1
        self.states = [first] if first is not None else []

    def _nested(self, state: _Arg, items: list[_Item], i: int) -> int:
        item = items[i]
        direct = self.node.direct if self.open_flag is None else []
        if state.kind == "c":
            raw = item.raw
            before = len(self.node.children)
            _line(raw[1:-1], self.node.children)
            if self.open_flag is None:
                self.node.direct.extend(self.node.children[before : before + 1])
            used = 1
        elif state.kind == "x":
            j = i
            while j < len(items) and (
                items[j].redirect or items[j].value not in tuple(state.stops)
            ):
                j += 1
            _command(items[i:j], self.node.children, [])
            stop = items[j].value if j < len(items) else ";"
            if self.open_flag is not None:
                self.node.flags[self.open_flag] += "::" + stop
            used = j + 1 - i
        else:
            _command(items[i:], self.node.children, direct)
            used = len(items) - i
        self._back_to_utility()
        return used


def _quoted(item: _Item) -> bool:
    """A plain word written between quotes (a command string for the scorer)."""
    raw = item.raw
    return (
        not item.redirect
        and not item.parts
        and len(raw) > 1
        and raw[0] in "\"'"
        and raw[-1] in "\"'"
    )


def _post_process(node: _Node) -> None:
    for alias, flag, long_flag in (
        ("egrep", "-E", "--extended-regexp"),
        ("fgrep", "-F", "--fixed-strings"),
    ):
        if node.name == alias:
            node.name = "grep"
            if flag not in node.flags and long_flag not in node.flags:
                node.flags.insert(0, flag)
    if node.name == "xargs":
        if "-I" in node.flags:
            for value in node.xargs_replace:
                if value is None:
                    raise _Unparsable("xargs -I without a replacement string")
                if value != "{}" and not node.direct:
                    raise _Unparsable("xargs -I without a command")
        elif node.direct:
            node.flags.append("-I")


@dataclass(frozen=True)
class Utility:
    """A utility as the NLC2CMD scorer sees it: its name and the flags of its whole subtree."""

    name: str
    flags: frozenset[str]


def nlc2cmd_structure(command: str) -> list[Utility]:
    """The utilities of `command` in the scorer's order, each with its (and its nested
    commands') flag names; [] when the scorer cannot parse the command."""
    roots: list[_Node] = []
    try:
        _line(_surface(command), roots)
    except (_Unparsable, RecursionError):
        return []
    out: list[Utility] = []

    def visit(node: _Node) -> frozenset[str]:
        index = len(out)
        out.append(Utility(node.name, frozenset()))
        flags = set(node.flags)
        for child in node.children:
            flags |= visit(child)
        out[index] = Utility(node.name, frozenset(flags))
        return frozenset(flags)

    for root in roots:
        visit(root)
    return out


# ---------------------------------------------------------------------------- the score


def flag_score(flags: frozenset[str], truth_flags: frozenset[str]) -> float:
    """S_F of two flag sets (1.0 when both are empty)."""
    if not flags and not truth_flags:
        return 1.0
    inter = len(flags & truth_flags)
    union = len(flags | truth_flags)
    return (2 * inter - union) / max(1, len(flags), len(truth_flags))


def nlc2cmd_score(predicted: str, truth: str, confidence: float = 1.0) -> float:
    """The NLC2CMD score of one prediction against one reference command, in [-1, 1]."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError("confidence must be in [0, 1]")
    pred = nlc2cmd_structure(predicted)
    gold = nlc2cmd_structure(truth)
    n = max(len(pred), len(gold))
    if n == 0:
        return 0.0
    total = 0.0
    for i in range(n):
        p = pred[i] if i < len(pred) else None
        g = gold[i] if i < len(gold) else None
        if p is not None and g is not None and p.name.lower() == g.name.lower():
            total += confidence * (1 + flag_score(p.flags, g.flags)) / 2
        else:
            total -= confidence
    return total / n


def aggregate_top_k(scores: Sequence[float]) -> float:
    """The competition's score over several predictions: best if any is positive, else mean."""
    if not scores:
        return -1.0
    if any(s > 0 for s in scores):
        return max(scores)
    return sum(scores) / len(scores)


# ------------------------------------------------------------- structure and templates


def command_structure(command: str) -> list[tuple[str, frozenset[str]]]:
    """[(program, flag names)] of every simple command in `command`, nested ones included,
    in order of appearance (`shellfish.shell.syntax`'s view: wrappers such as sudo are not
    programs; unlike `nlc2cmd_structure`, any program counts)."""
    return [(c.name, c.flag_names()) for c in simple_commands(command) if c.name]


def exact_match(predicted: str, truth: str) -> bool:
    """Equal after collapsing whitespace."""
    return " ".join(predicted.split()) == " ".join(truth.split())


def _template(command: SimpleCommand) -> list[str]:
    out = list(command.keywords)
    out += ["_=_"] * len(command.assignments)
    for wrapper in command.wrappers:
        out.append(wrapper.name)
    if command.program:
        out.append(command.name)
        for flag in command.flags:
            out.append(flag.name + ("=_" if flag.attached and flag.name.startswith("--") else ""))
        runs = any(n.via == "xargs" for n in command.nested)
        out += ["_"] * (0 if runs else len(command.operands))  # xargs' operands: its command
    for nested in command.nested:
        if nested.via in ("xargs", "-exec", "-c"):
            out += [f"[{nested.via}]", *_template(nested)]
    for r in command.redirects:
        out += [(str(r.fd) if r.fd is not None else "") + r.op, "_"]
    if command.separator:
        out.append(command.separator.replace("\n", ";"))
    return out


def command_template(command: str) -> str:
    """The command with every argument replaced by ``_`` (programs, flags, operators kept)."""
    out: list[str] = []
    for c in parse(command).commands:
        out += _template(c)
    return " ".join(out)


def template_match(predicted: str, truth: str) -> bool:
    """Equal once arguments are normalised away (same programs, flags, structure)."""
    return command_template(predicted) == command_template(truth)
