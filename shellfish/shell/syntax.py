"""The one parser of a shell command line: simple commands with their programs, options,
operands, redirections and the commands nested in them.

Every part of shellfish that reads a command line (danger check, validation, retrieval,
voting, metrics) asks this module, so they agree on what a command's programs are. No shell
is run. The grammar is POSIX sh plus the bash/zsh forms people type: quoting, ``$(...)``,
backticks, ``<(...)``/``>(...)``, ``$((...))``, ``${...}``, here-documents and here-strings,
fd redirections (``2>&1``, ``&>``), subshells and groups, compound-command keywords.

    parse(line)            -> CommandLine (the top-level simple commands, each with .nested)
    simple_commands(line)  -> every simple command, nested ones right after their parent
    programs(line)         -> the program names of those commands, in order

Contract: these functions never raise, whatever the text (unbalanced quotes, garbage, NUL);
what cannot be parsed is kept as words and reported in `CommandLine.problems`. The API only
grows: names and meanings stay (fields added later, such as `SimpleCommand.raw_words`, are
left out of equality so existing comparisons keep working).

Where a word's type matters (which options take a value, which programs wrap others) the
tables are in `shellfish.shell.grammar`, the one place for them.

What counts as "nested": the body of ``sh -c '...'`` (any shell in `grammar.SHELLS`, also
behind ``sudo``) and of ``su -c '...'`` (`grammar.COMMAND_OPTION_RUNNERS`), ``eval``'s words,
``find -exec ... ;`` / ``+``, the command ``xargs`` runs, and command/process substitutions
anywhere in a word (also inside double quotes). Wrappers
(``sudo``, ``env``, ``nice``, ``timeout``... see `grammar.WRAPPERS`) are not commands of
their own: they are recorded on the command they run (``sudo rm x``: program ``rm``, wrapper
``sudo``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from shellfish.shell.grammar import (
    COMMAND_OPTION_RUNNERS,
    FIND_EXEC_ACTIONS,
    HEADER_KEYWORDS,
    INTERPRETERS,
    KEYWORDS,
    REDIRECT_OPERATORS,
    SEPARATORS,
    SHELLS,
    SINGLE_DASH_LONG,
    VALUE_OPTIONS,
    WRAPPERS,
)

__all__ = [
    "INTERPRETERS",
    "KEYWORDS",
    "SHELLS",
    "WRAPPERS",
    "CommandLine",
    "Expansion",
    "Flag",
    "Redirect",
    "SimpleCommand",
    "Wrapper",
    "parse",
    "programs",
    "simple_commands",
    "split_options",
]

# Nesting deeper than this is kept as plain words (a `$($($(...)))` bomb cannot recurse us out).
MAX_DEPTH = 24

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_OPERATORS = sorted(SEPARATORS - {"\n"} | REDIRECT_OPERATORS | {"(", ")"}, key=len, reverse=True)
_META = frozenset(" \t\n|&;()<>")
_MAX_LEXER_NESTING = 100  # quotes inside substitutions inside quotes...
_COMMAND_EXPANSIONS = frozenset({"$(", "`", "<(", ">("})
_SPECIAL_PARAMETERS = frozenset("@*#?$!-0123456789")


@dataclass(frozen=True)
class Flag:
    """One option: ``-d:`` -> Flag("-d", ":", attached=True); ``-n 5`` -> Flag("-n", "5").

    `value` is None when the option takes none (or its value is unknown: an option not in
    `grammar.VALUE_OPTIONS` only gets a value when one is attached).
    """

    name: str
    value: str | None = None
    attached: bool = False


@dataclass(frozen=True)
class Redirect:
    """``2>&1`` -> Redirect(2, ">&", "1"); ``> out`` -> Redirect(None, ">", "out").

    `fd` is the explicit descriptor number (None when not written); `target` is the word
    after the operator with its quotes removed ("" when missing), or the delimiter of a
    here-document.
    """

    fd: int | None
    op: str
    target: str
    at: int = field(default=0, compare=False)  # how many of the command's words precede it


@dataclass(frozen=True)
class Expansion:
    """One expansion inside a word, in order of appearance.

    kind: "$" (parameter: ``$x``, ``${x:-y}``, ``$1``), "~" (a leading tilde), "$(("
    (arithmetic), and the ones that run commands: "$(", "`", "<(", ">(". `body` is the text
    inside (the parameter name/expression, or the command).
    """

    kind: str
    body: str = ""


@dataclass(frozen=True)
class Wrapper:
    """A prefix that runs the command after it.

    ``sudo -u bob rm x`` -> Wrapper("sudo", ("-u", "bob")) on the command ``rm x``.
    """

    name: str
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimpleCommand:
    """One simple command of a line (words are unquoted: ``'a b'`` -> ``a b``).

    program     the program word as written after quote removal ("" when the command only
                assigns, redirects, or is a compound-command header such as ``for x in ...``)
    name        the program's basename (``/usr/bin/rm`` -> ``rm``; ``\\rm`` -> ``rm``)
    args        every word after the program
    flags       the options among `args`, split (``-la`` -> -l, -a; ``--x=y`` -> --x with y);
                none after ``--``
    operands    the `args` that are neither options nor option values
    words       all words of the command in order (keywords, assignments, wrappers, program,
                args), without redirections
    wrappers    the wrappers skipped to reach the program, outermost first
    assignments ``VAR=value`` words before the program (and those given to ``env``)
    keywords    compound-command keywords before the program (``if``, ``do``, ``!``...)
    redirects   the redirections, in order
    separator   the operator after the command: one of `grammar.SEPARATORS`, or "" at the end
                of the line / group / substitution
    nested      the commands this one runs or substitutes, in order of appearance
    via         how this command is reached: "" (top level), "$(", "`", "<(", ">(", "-c", "watch"
                (a shell's -c body), "eval", "-exec" (find's -exec/-execdir/-ok/-okdir), "xargs"
    depth       0 at top level, +1 per nesting
    raw_words   `words` as written in the source (quotes and escapes kept)
    expansions  for each of `words`, its expansions in order (see `Expansion`)
    subshell    how many ``( ... )`` subshells enclose the command (within its own line)
    """

    program: str
    name: str
    args: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    operands: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    wrappers: tuple[Wrapper, ...] = ()
    assignments: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    separator: str = ""
    nested: tuple[SimpleCommand, ...] = ()
    via: str = ""
    depth: int = 0
    raw_words: tuple[str, ...] = field(default=(), compare=False)
    expansions: tuple[tuple[Expansion, ...], ...] = field(default=(), compare=False)
    subshell: int = field(default=0, compare=False)

    def walk(self) -> Iterator[SimpleCommand]:
        """This command, then its nested commands (depth first, in order of appearance)."""
        yield self
        for child in self.nested:
            yield from child.walk()

    def flag_names(self) -> frozenset[str]:
        """The names of this command's options (``-la`` -> {-l, -a})."""
        return frozenset(f.name for f in self.flags)


@dataclass(frozen=True)
class CommandLine:
    """A parsed line: its top-level simple commands and what could not be parsed cleanly."""

    text: str
    commands: tuple[SimpleCommand, ...] = ()
    problems: tuple[str, ...] = ()  # "unterminated quote", "unbalanced parenthesis", ...

    def walk(self) -> Iterator[SimpleCommand]:
        """Every simple command, nested ones right after their parent."""
        for command in self.commands:
            yield from command.walk()


# --------------------------------------------------------------------------------- lexer


@dataclass
class _Word:
    value: str  # after quote removal (substitutions kept as written)
    raw: str = ""  # as written in the source
    quoted: bool = False  # some part was quoted or escaped (so never an operator/keyword)
    parts: list[tuple[str, str]] = field(default_factory=list)  # expansions (kind, body) in order

    @property
    def subs(self) -> list[tuple[str, str]]:
        """The expansions that run commands."""
        return [(k, b) for k, b in self.parts if k in _COMMAND_EXPANSIONS]


@dataclass
class _Op:
    value: str  # a separator, "(", ")" or "\n"


@dataclass
class _Redir:
    op: str
    fd: int | None


_Token = _Word | _Op | _Redir


class _Lexer:
    """Turns text into words, operators and redirections; never raises."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.problems: list[str] = []
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, strip tabs) awaiting a newline
        self.nesting = 0  # open quotes/parentheses being matched (bounded: no deep recursion)

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        s = self.s
        while self.i < self.n:
            c = s[self.i]
            if c in " \t\r":
                self.i += 1
            elif c == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#" and self._word_start():
                while self.i < self.n and s[self.i] != "\n":
                    self.i += 1
            elif c == "\n":
                out.append(_Op("\n"))
                self.i += 1
                self._skip_heredocs()
            elif (
                c == "("
                and s.startswith("((", self.i)
                and (not out or isinstance(out[-1], _Op))
                and self._arith_end(self.i) > 0
            ):
                end = self._arith_end(self.i)
                out.append(_Word("(("))
                out.append(_Word(s[self.i + 2 : end - 2], quoted=True))
                out.append(_Word("))"))
                self.i = end
            elif c in "<>" and s.startswith("(", self.i + 1):
                out.append(self._word())  # process substitution
            elif c in _META:
                op = next((o for o in _OPERATORS if s.startswith(o, self.i)), c)
                self.i += len(op)
                if op in REDIRECT_OPERATORS:
                    out.append(_Redir(op, None))
                    if op in ("<<", "<<-"):
                        self._note_heredoc(op)
                else:
                    out.append(_Op(op))
            else:
                word = self._word()
                if (
                    not word.quoted
                    and word.value.isascii()
                    and word.value.isdigit()  # "¹" is a digit to Python, not to the shell
                    and len(word.value) < 6
                    and self.i < self.n
                    and s[self.i] in "<>"
                    and not s.startswith("(", self.i + 1)
                ):
                    op = next(o for o in _OPERATORS if s.startswith(o, self.i))
                    if op in REDIRECT_OPERATORS and not op.startswith("&"):
                        self.i += len(op)
                        out.append(_Redir(op, int(word.value)))
                        if op in ("<<", "<<-"):
                            self._note_heredoc(op)
                        continue
                out.append(word)
        return out

    def _word_start(self) -> bool:
        return self.i == 0 or self.s[self.i - 1] in " \t\n;&|()"

    def _note_heredoc(self, op: str) -> None:
        # The delimiter is the next word; remember it so the body lines are skipped.
        save = self.i
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1
        if self.i < self.n and self.s[self.i] not in _META:
            delim = self._word().value
            self.heredocs.append((delim, op == "<<-"))
        self.i = save

    def _skip_heredocs(self) -> None:
        while self.heredocs:
            delim, strip = self.heredocs.pop(0)
            while self.i < self.n:
                end = self.s.find("\n", self.i)
                end = self.n if end < 0 else end
                line = self.s[self.i : end]
                self.i = min(end + 1, self.n)
                if (line.lstrip("\t") if strip else line) == delim:
                    break
            else:
                self.problems.append(f"here-document not terminated by {delim}")

    def _arith_end(self, start: int) -> int:
        """End (exclusive) of ``((...))`` starting at `start`, or -1."""
        depth = 0
        i = start
        while i < self.n:
            c = self.s[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return i + 1 if i - 1 > start and self.s[i - 1] == ")" else -1
            elif c == "\n":
                return -1
            i += 1
        return -1

    def _too_deep(self) -> bool:
        if self.nesting > _MAX_LEXER_NESTING:
            self.problems.append("nesting too deep")
            return True
        return False

    def _match(self, start: int, close: str) -> int:
        """Index just past the `close` that balances the opener at `start` (or the end)."""
        self.nesting += 1
        try:
            return self.n if self._too_deep() else self._match_from(start, close)
        finally:
            self.nesting -= 1

    def _match_from(self, start: int, close: str) -> int:
        s = self.s
        depth = 0
        opener = s[start]
        i = start
        while i < self.n:
            c = s[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                j = s.find("'", i + 1)
                i = self.n if j < 0 else j + 1
                continue
            if c == '"':
                i = self._dquote_end(i)
                continue
            if c == "`":
                i = self._backtick_end(i)
                continue
            if c == opener:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        self.problems.append(f"unbalanced {opener}")
        return self.n

    def _dquote_end(self, start: int) -> int:
        self.nesting += 1
        try:
            return self.n if self._too_deep() else self._dquote_end_from(start)
        finally:
            self.nesting -= 1

    def _dquote_end_from(self, start: int) -> int:
        s = self.s
        i = start + 1
        while i < self.n:
            c = s[i]
            if c == "\\":
                i += 2
            elif c == '"':
                return i + 1
            elif c == "$" and s.startswith("$(", i):
                i = self._match(i + 1, ")")
            elif c == "`":
                i = self._backtick_end(i)
            else:
                i += 1
        self.problems.append("unterminated double quote")
        return self.n

    def _backtick_end(self, start: int) -> int:
        i = start + 1
        while i < self.n:
            if self.s[i] == "\\":
                i += 2
            elif self.s[i] == "`":
                return i + 1
            else:
                i += 1
        self.problems.append("unterminated backquote")
        return self.n

    def _dollar(self, word: _Word) -> None:
        """A ``$`` construct at self.i: $((...)), $(...), ${...} or a plain $."""
        s = self.s
        i = self.i
        if s.startswith("$((", i):
            end = self._match(i + 1, ")")
            word.parts.append(("$((", s[i + 3 : max(i + 3, end - 2)]))
        elif s.startswith("$(", i):
            end = self._match(i + 1, ")")
            word.parts.append(("$(", s[i + 2 : max(i + 2, end - 1)]))
        elif s.startswith("${", i):
            end = self._match(i + 1, "}")
            word.parts.append(("$", s[i + 2 : max(i + 2, end - 1)]))
        else:
            end = i + 1
            match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", s[end:])
            if match:
                end += match.end()
            elif end < self.n and s[end] in _SPECIAL_PARAMETERS:
                end += 1
            if end > i + 1:
                word.parts.append(("$", s[i + 1 : end]))
        word.value += s[i:end]
        self.i = end

    def _backtick(self, word: _Word) -> None:
        end = self._backtick_end(self.i)
        body = self.s[self.i + 1 : max(self.i + 1, end - 1)]
        word.parts.append(("`", re.sub(r"\\([`\\$])", r"\1", body)))
        word.value += self.s[self.i : end]
        self.i = end

    def _word(self) -> _Word:
        start = self.i
        word = self._scan_word()
        word.raw = self.s[start : self.i]
        return word

    def _scan_word(self) -> _Word:
        s = self.s
        word = _Word("")
        if s[self.i] in "<>":  # process substitution <(...) / >(...)
            end = self._match(self.i + 1, ")")
            word.parts.append((s[self.i] + "(", s[self.i + 2 : max(self.i + 2, end - 1)]))
            word.value += s[self.i : end]
            word.quoted = True
            self.i = end
        elif s[self.i] == "~":
            word.parts.append(("~", ""))
        while self.i < self.n:
            c = s[self.i]
            if c in _META:
                break
            if c == "\\":
                word.quoted = True
                if self.i + 1 < self.n and s[self.i + 1] != "\n":
                    word.value += s[self.i + 1]
                self.i += 2
            elif c == "'":
                word.quoted = True
                j = s.find("'", self.i + 1)
                if j < 0:
                    self.problems.append("unterminated single quote")
                    j = self.n
                word.value += s[self.i + 1 : j]
                self.i = j + 1
            elif c == '"':
                word.quoted = True
                self._double_quoted(word)
            else:
                self._expansion_or_char(word, c)
        return word

    def _expansion_or_char(self, word: _Word, c: str) -> None:
        """Take a ``$`` construct, a backquoted command or one literal character at self.i."""
        if c == "$":
            self._dollar(word)
        elif c == "`":
            self._backtick(word)
        else:
            word.value += c
            self.i += 1

    def _double_quoted(self, word: _Word) -> None:
        s = self.s
        self.i += 1
        while self.i < self.n:
            c = s[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and self.i + 1 < self.n and s[self.i + 1] in '$`"\\\n':
                if s[self.i + 1] != "\n":
                    word.value += s[self.i + 1]
                self.i += 2
            else:
                self._expansion_or_char(word, c)
        self.problems.append("unterminated double quote")


# -------------------------------------------------------------------------------- parser


@dataclass
class _Raw:
    """The tokens of one simple command before interpretation."""

    words: list[_Word] = field(default_factory=list)
    redirects: list[tuple[_Redir, _Word | None, int]] = field(default_factory=list)
    subshell: int = 0


def _basename(word: str) -> str:
    return word.rstrip("/").rsplit("/", 1)[-1] if "/" in word.rstrip("/") else word


def split_options(program: str, args: list[str] | tuple[str, ...]) -> tuple[list[Flag], list[str]]:
    """(flags, operands) of `args` given to `program` (its basename).

    Short bundles split into letters (``-la``); an option listed in `grammar.VALUE_OPTIONS`
    takes the rest of its bundle or the next word as its value (``-d:``, ``-k 2``, ``-nk2``);
    an unlisted letter followed by a non-letter takes that rest as its value (``-I{}``,
    ``-n5``); ``--x=y`` is --x with y; programs in `grammar.SINGLE_DASH_LONG` keep ``-name``
    whole. ``--`` ends the options; ``-`` is an operand. ``xargs``' options end at its first
    operand (the command it runs); ``find -exec``'s command words are not find's operands.
    """
    flags, operands, _first = _split_options(program, args)
    return flags, operands


def _split_options(
    program: str, args: list[str] | tuple[str, ...]
) -> tuple[list[Flag], list[str], int]:
    """split_options, plus the index of the first word after the options when they end at
    an operand (xargs), else len(args)."""
    values = VALUE_OPTIONS.get(program, frozenset())
    flags: list[Flag] = []
    operands: list[str] = []
    i = 0
    end_of_options = False
    while i < len(args):
        a = args[i]
        i += 1
        if end_of_options or a == "-" or not a.startswith("-"):
            if program in _OPTIONS_END_AT_OPERAND:
                return flags, operands + list(args[i - 1 :]), i - 1
            operands.append(a)
            continue
        if a == "--":
            end_of_options = True
            continue
        if program == "find" and a in FIND_EXEC_ACTIONS:
            flags.append(Flag(a))
            while i < len(args) and not _exec_end(args, i, a):
                i += 1
            i += 1
            continue
        if a.startswith("--") or program in SINGLE_DASH_LONG:
            name, eq, value = a.partition("=")
            if eq and a.startswith("--"):
                flags.append(Flag(name, value, attached=True))
            elif a in values and i < len(args):
                flags.append(Flag(a, args[i]))
                i += 1
            else:
                flags.append(Flag(a))
            continue
        body = a[1:]
        digits = len(body) - len(body.lstrip("0123456789"))
        if digits:  # `-5` (head), `-1` (ls): a numeric option
            flags.append(Flag("-" + body[:digits]))
            body = body[digits:]
        j = 0
        while j < len(body):
            name = "-" + body[j]
            rest = body[j + 1 :]
            if name in values:
                if rest:
                    flags.append(Flag(name, rest, attached=True))
                elif i < len(args):
                    flags.append(Flag(name, args[i]))
                    i += 1
                else:
                    flags.append(Flag(name))
                break
            if rest and not rest[0].isalpha():
                flags.append(Flag(name, rest, attached=True))
                break
            flags.append(Flag(name))
            j += 1
    return flags, operands, len(args)


_OPTIONS_END_AT_OPERAND = frozenset({"xargs", "watch"})


def _exec_end(args: list[str] | tuple[str, ...], k: int, action: str) -> bool:
    """Whether args[k] ends the command of find's `action` (``;``, or ``+`` after ``{}``)."""
    return args[k] == ";" or (
        args[k] == "+" and k > 0 and args[k - 1] == "{}" and action in ("-exec", "-execdir")
    )


class _Parser:
    def __init__(self, depth: int, via: str) -> None:
        self.depth = depth
        self.via = via
        self.problems: list[str] = []

    # -- lines ------------------------------------------------------------------------
    def line(self, text: str) -> list[SimpleCommand]:
        lexer = _Lexer(text)
        tokens = lexer.tokens()
        self.problems.extend(lexer.problems)
        out: list[SimpleCommand] = []
        raw = _Raw()
        parens = 0
        in_test = False  # inside [[ ... ]]: operators are words
        case_patterns = False  # after `case x in` / `;;`: words up to `)` are a pattern
        k = 0
        while k < len(tokens):
            tok = tokens[k]
            k += 1
            if in_test:
                word = tok if isinstance(tok, _Word) else _Word(_token_text(tok), quoted=True)
                raw.words.append(word)
                in_test = not (isinstance(tok, _Word) and tok.value == "]]" and not tok.quoted)
                continue
            if isinstance(tok, _Word):
                if case_patterns and not raw.words and not tok.quoted and tok.value == "esac":
                    case_patterns = False
                raw.words.append(tok)
                first = raw.words[0]
                if tok.value == "[[" and not tok.quoted and len(raw.words) == 1:
                    in_test = True
                elif (
                    len(raw.words) == 3
                    and tok.value == "in"
                    and not first.quoted
                    and first.value == "case"
                ):
                    self._finish(raw, "", out)  # `case WORD in`: patterns follow
                    raw = _Raw()
                    case_patterns = True
                continue
            if isinstance(tok, _Redir):
                nxt = tokens[k] if k < len(tokens) else None
                target = nxt if isinstance(nxt, _Word) else None
                k += 1 if target is not None else 0
                raw.redirects.append((tok, target, len(raw.words)))
                continue
            op = tok.value
            if case_patterns and op == "|":
                continue  # `a|b)`: alternatives of one case pattern
            if op == "(":
                if (
                    raw.words
                    and (len(raw.words) == 1 or raw.words[0].value == "function")
                    and k < len(tokens)
                    and _is_op(tokens[k], ")")
                ):
                    # `name () { ...; }` / `function name () {`: a function definition header
                    if raw.words[0].value != "function":
                        raw = _Raw()
                    k += 1
                elif case_patterns or not raw.words:
                    parens += 1 if not case_patterns else 0
                else:
                    self.problems.append("unexpected (")
                    self._finish(raw, "", out, parens)
                    raw = _Raw()
                    parens += 1
                continue
            if op == ")":
                if case_patterns:
                    raw = _Raw()  # the words so far were the pattern
                    case_patterns = False
                    continue
                if parens == 0:
                    self.problems.append("unbalanced )")
                self._finish(raw, "", out, parens)
                parens = max(0, parens - 1)
                raw = _Raw()
                continue
            # a separator
            self._finish(raw, op, out, parens)
            raw = _Raw()
            if op in (";;", ";&", ";;&"):
                case_patterns = True
        self._finish(raw, "", out, parens)
        if parens:
            self.problems.append("unbalanced (")
        return out

    def _finish(
        self, raw: _Raw, separator: str, out: list[SimpleCommand], subshell: int = 0
    ) -> None:
        raw.subshell = subshell
        if raw.words or raw.redirects:
            out.append(self.command(raw, separator))
        elif separator and out and not out[-1].separator:
            out[-1] = replace(out[-1], separator=separator)

    # -- one simple command -----------------------------------------------------------
    def command(self, raw: _Raw, separator: str) -> SimpleCommand:
        words = raw.words
        values = [w.value for w in words]
        i = 0
        keywords: list[str] = []
        while i < len(words) and not words[i].quoted:
            if words[i].value in KEYWORDS:
                keywords.append(words[i].value)
                i += 1
            elif words[i].value == "function":  # `function name {`: the name is no program
                keywords.append("function")
                i += 2
            else:
                break
        if i < len(words) and not words[i].quoted and words[i].value in HEADER_KEYWORDS:
            # `for x in a b`, `case $x in`, `function f`: no program here
            keywords.append(words[i].value)
            return self._build(
                raw, "", values, keywords=keywords, args_from=len(words), sep=separator
            )
        assignments: list[str] = []
        # `x="a b"` assigns (the name is unquoted), `"x=1"` and `\x=1` are words
        while i < len(words) and _ASSIGNMENT.match(words[i].raw or words[i].value):
            assignments.append(words[i].value)
            i += 1
        wrappers: list[Wrapper] = []
        while i < len(words):
            name = _basename(words[i].value)
            spec = WRAPPERS.get(name)
            if spec is None:
                break
            j = i + 1
            positionals = spec.positionals
            stopped = False
            while j < len(words):
                w = words[j].value
                if w == "--":
                    j += 1
                    break
                if w.startswith("-") and len(w) > 1:
                    opt = w.split("=", 1)[0] if w.startswith("--") else w[:2]
                    if opt in spec.not_a_wrapper:
                        stopped = True
                        break
                    takes = opt in spec.value_options and "=" not in w and len(w) <= 2
                    if w.startswith("--"):
                        takes = opt in spec.value_options and "=" not in w
                    j += 2 if takes else 1
                    continue
                if spec.assignments and _ASSIGNMENT.match(words[j].raw or w):
                    assignments.append(w)
                    j += 1
                    continue
                if positionals:
                    positionals -= 1
                    j += 1
                    continue
                break
            if stopped or j >= len(words):
                break  # the wrapper runs nothing here: it is the program itself
            wrappers.append(Wrapper(name, tuple(values[i + 1 : j])))
            i = j
        return self._build(
            raw,
            values[i] if i < len(words) else "",
            values,
            keywords=keywords,
            assignments=assignments,
            wrappers=wrappers,
            args_from=i + 1,
            sep=separator,
        )

    def _build(
        self,
        raw: _Raw,
        program: str,
        values: list[str],
        *,
        keywords: list[str],
        args_from: int,
        sep: str,
        assignments: list[str] | None = None,
        wrappers: list[Wrapper] | None = None,
    ) -> SimpleCommand:
        name = _basename(program)
        args = values[args_from:]
        flags, operands = split_options(name, args) if program else ([], [])
        nested: list[tuple[int, list[SimpleCommand]]] = []
        # substitutions anywhere in the command's words and redirection targets
        for index, word in enumerate(raw.words):
            for kind, body in word.subs:
                nested.append((index, self._sub(body, kind)))
        redirects: list[Redirect] = []
        for redir, target, at in raw.redirects:
            redirects.append(Redirect(redir.fd, redir.op, target.value if target else "", at))
            if target is not None:
                for kind, body in target.subs:
                    nested.append((len(raw.words), self._sub(body, kind)))
        if program:
            nested.extend(self._runs(name, raw.words, args_from))
        nested.sort(key=lambda item: item[0])
        return SimpleCommand(
            program=program,
            name=name,
            args=tuple(args),
            flags=tuple(flags),
            operands=tuple(operands),
            words=tuple(values),
            wrappers=tuple(wrappers or ()),
            assignments=tuple(assignments or ()),
            keywords=tuple(keywords),
            redirects=tuple(redirects),
            separator=sep,
            nested=tuple(c for _i, group in nested for c in group),
            via=self.via,
            depth=self.depth,
            raw_words=tuple(w.raw or w.value for w in raw.words),
            expansions=tuple(tuple(Expansion(k, b) for k, b in w.parts) for w in raw.words),
            subshell=raw.subshell,
        )

    def _sub(self, body: str, via: str) -> list[SimpleCommand]:
        if self.depth + 1 > MAX_DEPTH:
            self.problems.append("nesting too deep")
            return []
        child = _Parser(self.depth + 1, via)
        commands = child.line(body)
        self.problems.extend(child.problems)
        return commands

    def _words_command(self, words: list[_Word], via: str) -> list[SimpleCommand]:
        """A command given as separate words (find -exec, xargs): parsed as one command."""
        if not words or self.depth + 1 > MAX_DEPTH:
            return []
        child = _Parser(self.depth + 1, via)
        command = child.command(_Raw(words=list(words)), "")
        self.problems.extend(child.problems)
        return [command]

    def _runs(
        self, name: str, words: list[_Word], start: int
    ) -> list[tuple[int, list[SimpleCommand]]]:
        """The commands a program runs from its arguments (sh -c, eval, find -exec, xargs)."""
        out: list[tuple[int, list[SimpleCommand]]] = []
        args = [w.value for w in words[start:]]
        if name in SHELLS:
            for j, a in enumerate(args):
                if a == "--" or not a.startswith("-"):
                    break
                if not a.startswith("--") and "c" in a[1:] and j + 1 < len(args):
                    out.append((start + j + 1, self._sub(args[j + 1], "-c")))
                    break
        elif name in COMMAND_OPTION_RUNNERS:
            for j, a in enumerate(args):
                if a == "--command" or (
                    a.startswith("-") and not a.startswith("--") and a.endswith("c")
                ):
                    if j + 1 < len(args):
                        out.append((start + j + 1, self._sub(args[j + 1], "-c")))
                    break
                if a.startswith("--command="):
                    out.append((start + j, self._sub(a.split("=", 1)[1], "-c")))
                    break
        elif name == "eval" and args:
            out.append((start, self._sub(" ".join(args), "eval")))
        elif name == "find":
            j = 0
            while j < len(args):
                if args[j] in FIND_EXEC_ACTIONS:
                    k = j + 1
                    while k < len(args) and not _exec_end(args, k, args[j]):
                        k += 1
                    body = words[start + j + 1 : start + k]
                    out.append((start + j + 1, self._words_command(body, "-exec")))
                    j = k
                j += 1
        elif name == "watch":  # its arguments, joined, are a shell command line (sh -c)
            _flags, _operands, first = _split_options("watch", args)
            if first < len(args):
                out.append((start + first, self._sub(" ".join(args[first:]), "watch")))
        elif name == "xargs":
            _flags, _operands, first = _split_options("xargs", args)
            if first < len(args):
                out.append((start + first, self._words_command(words[start + first :], "xargs")))
        return out


def _is_op(tok: _Token, value: str) -> bool:
    return isinstance(tok, _Op) and tok.value == value


def _token_text(tok: _Token) -> str:
    if isinstance(tok, _Redir):
        return (str(tok.fd) if tok.fd is not None else "") + tok.op
    if isinstance(tok, _Op):
        return tok.value
    return tok.value


# ---------------------------------------------------------------------------------- API


def parse(line: str) -> CommandLine:
    """The simple commands of `line` (top level; nested ones hang off `.nested`). Never raises."""
    parser = _Parser(0, "")
    commands = parser.line(line if isinstance(line, str) else str(line))
    return CommandLine(line, tuple(commands), tuple(dict.fromkeys(parser.problems)))


def simple_commands(line: str) -> tuple[SimpleCommand, ...]:
    """Every simple command of `line` in order of appearance, nested ones right after their
    parent (``find . -exec rm {} ; | wc`` -> find, rm, wc)."""
    return tuple(parse(line).walk())


def programs(line: str) -> tuple[str, ...]:
    """The program names (basenames) of `line`'s simple commands in order, nested ones
    included, wrappers not (``sudo find . | xargs rm`` -> find, xargs, rm)."""
    return tuple(c.name for c in simple_commands(line) if c.name)
