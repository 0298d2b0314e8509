"""shellfish.shell.syntax: the one command-line parser (examples per construct + properties)."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shellfish.shell.syntax import (
    Expansion,
    Flag,
    Redirect,
    SimpleCommand,
    Wrapper,
    parse,
    programs,
    simple_commands,
    split_options,
)


def one(line: str) -> SimpleCommand:
    commands = parse(line).commands
    assert len(commands) == 1, commands
    return commands[0]


# ------------------------------------------------------------------ wrappers and programs


@pytest.mark.parametrize(
    ("line", "program", "wrappers"),
    [
        ("sudo -u bob rm -rf x", "rm", ("sudo",)),
        ("sudo -E -H apt install x", "apt", ("sudo",)),
        ("doas -u root rm x", "rm", ("doas",)),
        ("env -i A=1 B=2 make", "make", ("env",)),
        ("env -u HOME -C /tmp ls", "ls", ("env",)),
        ("nice -n 10 tar czf a.tgz d", "tar", ("nice",)),
        ("nice -10 make", "make", ("nice",)),
        ("ionice -c 3 -n 7 rsync a b", "rsync", ("ionice",)),
        ("ionice -c2 cp a b", "cp", ("ionice",)),
        ("timeout 5s curl x", "curl", ("timeout",)),
        ("timeout -s KILL -k 2 10 ./run", "./run", ("timeout",)),
        ("nohup ./server &", "./server", ("nohup",)),
        ("time make -j4", "make", ("time",)),
        ("command ls", "ls", ("command",)),
        ("exec -a name prog", "prog", ("exec",)),
        ("builtin cd /", "cd", ("builtin",)),
        ("noglob rm *.o", "rm", ("noglob",)),
        ("stdbuf -oL tail -f log", "tail", ("stdbuf",)),
        ("sudo nice -n 5 env A=1 timeout 3 ls", "ls", ("sudo", "nice", "env", "timeout")),
        ("sudo -- rm x", "rm", ("sudo",)),
        ("\\rm -f x", "rm", ()),
        ("/usr/bin/rm x", "/usr/bin/rm", ()),
        ("setsid ./daemon", "./daemon", ("setsid",)),
        ("busybox rm -rf x", "rm", ("busybox",)),
        ("flock /tmp/lock make", "make", ("flock",)),
        ("pkexec --user root rm x", "rm", ("pkexec",)),
        ("eatmydata apt-get install x", "apt-get", ("eatmydata",)),
        ("caffeinate -i make", "make", ("caffeinate",)),
    ],
)
def test_program_after_wrappers(line: str, program: str, wrappers: tuple[str, ...]) -> None:
    c = one(line)
    assert c.program == program
    assert c.name == program.rsplit("/", 1)[-1]
    assert tuple(w.name for w in c.wrappers) == wrappers


def test_wrapper_keeps_its_own_words_and_assignments() -> None:
    c = one("sudo -u bob FOO=1 env -i BAR=2 grep x")
    assert c.wrappers == (Wrapper("sudo", ("-u", "bob", "FOO=1")), Wrapper("env", ("-i", "BAR=2")))
    assert c.assignments == ("FOO=1", "BAR=2")
    assert c.words == ("sudo", "-u", "bob", "FOO=1", "env", "-i", "BAR=2", "grep", "x")


@pytest.mark.parametrize(
    ("line", "program"),
    [
        ("sudo -i", "sudo"),
        ("sudo -l", "sudo"),
        ("time", "time"),
        ("env", "env"),
        ("command -v ls", "command"),
        ("ionice -p 42", "ionice"),
        ("exec > log", "exec"),
    ],
)
def test_a_wrapper_that_runs_nothing_is_the_program(line: str, program: str) -> None:
    assert one(line).program == program


def test_assignments_before_the_program() -> None:
    c = one('A=1 B="x y" C+=z arr[0]=1 make all')
    assert c.assignments == ("A=1", "B=x y", "C+=z", "arr[0]=1")
    assert c.program == "make"
    assert one('"A=1" ls').program == "A=1"  # a quoted name is a word, not an assignment
    assert one("A=1").program == ""


# ------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("line", "flags", "operands"),
    [
        ("cut -d: -f1 f", [Flag("-d", ":", True), Flag("-f", "1", True)], ["f"]),
        ("cut -d , -f 2 f", [Flag("-d", ","), Flag("-f", "2")], ["f"]),
        ("sort -nk2 f", [Flag("-n"), Flag("-k", "2", True)], ["f"]),
        ("sort -t: -k3,3n f", [Flag("-t", ":", True), Flag("-k", "3,3n", True)], ["f"]),
        ("ls -la /", [Flag("-l"), Flag("-a")], ["/"]),
        ("ls -1a", [Flag("-1"), Flag("-a")], []),
        ("head -5 f", [Flag("-5")], ["f"]),
        ("head -n 5 f", [Flag("-n", "5")], ["f"]),
        ("grep --color=auto -e x -- -y", [Flag("--color", "auto", True), Flag("-e", "x")], ["-y"]),
        ("grep --include '*.py' x", [Flag("--include", "*.py")], ["x"]),
        ("cat - f", [], ["-", "f"]),
        ("find . -name '*.c' -type f", [Flag("-name", "*.c"), Flag("-type", "f")], ["."]),
        (
            "tar -xzf a.tgz -C /tmp",
            [Flag("-x"), Flag("-z"), Flag("-f", "a.tgz"), Flag("-C", "/tmp")],
            [],
        ),
        ("foo -x:y", [Flag("-x", ":y", True)], []),  # unknown program: attached non-letters
    ],
)
def test_flags_and_operands(line: str, flags: list[Flag], operands: list[str]) -> None:
    c = one(line)
    assert list(c.flags) == flags
    assert list(c.operands) == operands


def test_xargs_options_and_its_command() -> None:
    c = one("xargs -I{} -0 -n 1 rm -rf {}")
    assert [f.name for f in c.flags] == ["-I", "-0", "-n"]
    assert c.flags[0].value == "{}"
    (rm,) = c.nested
    assert (rm.name, rm.via, rm.depth) == ("rm", "xargs", 1)
    assert [f.name for f in rm.flags] == ["-r", "-f"]
    assert programs("find . | xargs") == ("find", "xargs")  # no command: none invented
    assert programs("ls | xargs -P4 -i sudo chmod 644") == ("ls", "xargs", "chmod")


def test_split_options_directly() -> None:
    assert split_options("sort", ["-k", "2", "f"]) == ([Flag("-k", "2")], ["f"])
    assert split_options("unknown", ["-k", "2"]) == ([Flag("-k")], ["2"])


# ----------------------------------------------------------------------- redirections


def test_redirections_with_fds() -> None:
    c = one("cmd <in >out 2>&1 3>>log &>all 2>/dev/null <<<'here string' >| f")
    assert c.redirects == (
        Redirect(None, "<", "in"),
        Redirect(None, ">", "out"),
        Redirect(2, ">&", "1"),
        Redirect(3, ">>", "log"),
        Redirect(None, "&>", "all"),
        Redirect(2, ">", "/dev/null"),
        Redirect(None, "<<<", "here string"),
        Redirect(None, ">|", "f"),
    )
    assert c.args == ()
    assert one("echo 2 > f").args == ("2",)  # a spaced number is an argument
    # digits to Python but not to the shell (found by hypothesis: int("¹") raised)
    assert one("echo ¹>f").args == ("¹",)
    assert one("echo ¹>f").redirects == (Redirect(None, ">", "f"),)


def test_here_document_body_is_not_parsed() -> None:
    line = "cat <<EOF > out\nrm -rf /\nEOF\nls"
    assert programs(line) == ("cat", "ls")
    assert parse(line).commands[0].redirects[0] == Redirect(None, "<<", "EOF")
    assert programs("cat <<-'END'\n\trm x\n\tEND\necho") == ("cat", "echo")
    assert "here-document not terminated by EOF" in parse("cat <<EOF\nrm x").problems


# ------------------------------------------------------------------------- separators


def test_separators() -> None:
    line = "a | b || c && d ; e & f |& g\nh"
    cs = parse(line).commands
    assert [c.name for c in cs] == list("abcdefgh")
    assert [c.separator for c in cs] == ["|", "||", "&&", ";", "&", "|&", "\n", ""]


def test_quoted_and_escaped_operators_are_words() -> None:
    c = one("echo 'a|b' \"c;d\" e\\&f \\;")
    assert c.args == ("a|b", "c;d", "e&f", ";")


def test_comments() -> None:
    assert programs("ls # rm -rf /") == ("ls",)
    assert one("echo a#b").args == ("a#b",)


# -------------------------------------------------------------- compound commands


def test_compound_keywords() -> None:
    assert programs("if [ -f x ]; then rm x; elif true; then :; else echo; fi") == (
        "[",
        "rm",
        "true",
        ":",
        "echo",
    )
    assert programs("while read l; do echo $l; done < f") == ("read", "echo")
    assert programs("for f in *.txt; do mv $f x; done") == ("mv",)
    assert programs("until false; do ! grep x f; done") == ("false", "grep")
    assert programs("case $x in a) rm x;; b|c) ls;; *) ;; esac") == ("rm", "ls")
    assert programs("f() { ls; }; function g { pwd; }") == ("ls", "pwd")
    assert one("[[ -f a && $b < c ]]").args == ("-f", "a", "&&", "$b", "<", "c", "]]")
    assert programs("[[ -f a ]] && ls") == ("[[", "ls")
    assert programs("((i++)); echo") == ("((", "echo")


def test_subshells_and_groups() -> None:
    cs = parse("(cd x && make) | tee log; { ls; pwd; } > out").commands
    assert [c.name for c in cs] == ["cd", "make", "tee", "ls", "pwd", ""]
    assert cs[1].separator == "|"  # the group's pipe belongs to its last command
    # the closing keyword is a command without a program, holding the group's redirection
    assert (cs[-1].keywords, cs[-1].redirects) == (("}",), (Redirect(None, ">", "out"),))


# ----------------------------------------------------------------- nested commands


def test_command_and_process_substitutions() -> None:
    cs = simple_commands('echo "today: $(date +%F)" `whoami` > $(mktemp)')
    assert [(c.name, c.via, c.depth) for c in cs] == [
        ("echo", "", 0),
        ("date", "$(", 1),
        ("whoami", "`", 1),
        ("mktemp", "$(", 1),
    ]
    assert programs("diff <(sort a) <(sort b) > >(tee x)") == ("diff", "sort", "sort", "tee")
    assert programs("x=$(ls | wc -l)") == ("ls", "wc")
    assert programs("echo $(( 1 + 2 )) ${x:-y} '$(no)'") == ("echo",)
    assert programs("echo $(echo $(echo deep))") == ("echo", "echo", "echo")


def test_shell_c_bodies_are_parsed() -> None:
    cs = simple_commands("sudo sh -c 'curl x | bash' && bash -lc \"rm -rf /tmp/y\"")
    assert [(c.name, c.via) for c in cs] == [
        ("sh", ""),
        ("curl", "-c"),
        ("bash", "-c"),
        ("bash", ""),
        ("rm", "-c"),
    ]
    assert cs[0].flags == (Flag("-c", "curl x | bash"),)
    assert programs("eval 'rm x; ls'") == ("eval", "rm", "ls")


def test_su_c_bodies_are_parsed() -> None:
    cs = simple_commands("su -c 'rm -rf /tmp/x' bob; sudo su - root -c \"ls\"; su --command=id")
    assert [(c.name, c.via) for c in cs] == [
        ("su", ""),
        ("rm", "-c"),
        ("su", ""),
        ("ls", "-c"),
        ("su", ""),
        ("id", "-c"),
    ]
    assert [(c.name, c.via) for c in simple_commands("su -l bob")] == [("su", "")]


def test_find_exec() -> None:
    cs = simple_commands("find . -name '*.o' -exec rm -f {} \\; -execdir chmod 644 {} + | wc")
    assert [(c.name, c.via) for c in cs] == [
        ("find", ""),
        ("rm", "-exec"),
        ("chmod", "-exec"),
        ("wc", ""),
    ]
    assert [f.name for f in cs[0].flags] == ["-name", "-exec", "-execdir"]
    assert cs[0].operands == (".",)
    assert [f.name for f in cs[1].flags] == ["-f"]


def test_nested_order_follows_the_words() -> None:
    assert programs("find $(pwd) -exec grep x {} \\; | xargs sh -c 'wc -l'") == (
        "find",
        "pwd",
        "grep",
        "xargs",
        "sh",
        "wc",
    )


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("echo 'abc", "unterminated single quote"),
        ('echo "abc', "unterminated double quote"),
        ("echo `date", "unterminated backquote"),
        ("echo $(date", "unbalanced ("),
        ("(ls", "unbalanced ("),
        ("ls)", "unbalanced )"),
    ],
)
def test_unbalanced_input_is_reported_not_raised(line: str, problem: str) -> None:
    assert problem in parse(line).problems
    assert programs(line)[0] in {"echo", "ls"}


def test_empty_and_degenerate_lines() -> None:
    assert parse("").commands == ()
    assert programs("|") == ()
    assert programs(";;;") == ()
    assert programs("   \n\t") == ()


def test_nesting_depth_is_bounded() -> None:
    line = "echo " + "$(" * 200 + "ls" + ")" * 200
    cs = simple_commands(line)
    assert max(c.depth for c in cs) <= 24
    assert "nesting too deep" in parse(line).problems
    # quotes inside substitutions inside quotes: the lexer must not recurse without bound
    for deep in ('"$(' * 2000, '$(echo "' * 1500, '"`$(' * 1000):
        assert "nesting too deep" in parse(deep).problems


# ----------------------------------------------------------------------- properties

_SHELLISH = st.text(alphabet="ab -|&;<>()$`'\"\\{}#\n=*/0129", max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), _SHELLISH))
def test_never_raises_and_invariants_hold(text: str) -> None:
    line = parse(text)
    for c in line.walk():
        assert (c.name == "") == (c.program == "")
        assert "/" not in c.name or c.program.endswith("/")
        assert set(c.operands) <= set(c.args)
        assert all(f.name.startswith("-") for f in c.flags)
        assert c.separator in {"", "|", "|&", "||", "&&", ";", "&", "\n", ";;", ";&", ";;&"}
        assert c.args == c.words[len(c.words) - len(c.args) :]
        for child in c.nested:
            assert child.depth == c.depth + 1


_NESTED = st.recursive(
    st.sampled_from(["ls", "a b", "x=1", "-la", "'q'", "$v", "|", ";", "&&", ">f", "2>&1", ""]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(" ".join),
        inner.map(lambda t: f"$({t})"),
        inner.map(lambda t: f'"{t}"'),
        inner.map(lambda t: f"`{t}`"),
        inner.map(lambda t: f"<({t})"),
        inner.map(lambda t: f"sh -c '{t}'"),
        inner.map(lambda t: f"({t})"),
        inner.map(lambda t: f"{t})"),  # unbalanced on purpose
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(_NESTED)
def test_nested_constructs_never_raise(text: str) -> None:
    line = parse(text)
    for c in line.walk():
        assert c.depth <= 24
        assert len(c.expansions) == len(c.words) == len(c.raw_words)


_WORD = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORD, min_size=1, max_size=6))
def test_quoted_words_come_back_as_one_command(words: list[str]) -> None:
    line = " ".join(shlex.quote(w) for w in words)
    (command,) = parse(line).commands
    assert command.words == tuple(words)
    assert parse(line).problems == ()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.from_regex(r"[a-z][a-z0-9]{0,5}( -[a-z]{1,3})?( [a-z./]{1,6})?", fullmatch=True),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.sampled_from(["|", "||", "&&", ";", "&", "\n"]), min_size=3, max_size=3),
)
def test_programs_of_a_list_are_the_programs_of_its_parts(
    parts: list[str], seps: list[str]
) -> None:
    line = parts[0]
    for part, sep in zip(parts[1:], seps, strict=False):
        line += f" {sep} {part}"
    expected = tuple(p for part in parts for p in programs(part))
    assert programs(line) == expected


def test_raw_words_expansions_redirect_positions_and_subshells() -> None:
    (c,) = parse("(echo \"$HOME/$(date)\" '$x' ~/d $((1+2)) 2>/dev/null `id` ${y:-z})").commands
    assert c.raw_words[1:3] == ('"$HOME/$(date)"', "'$x'")
    assert c.expansions == (
        (),
        (Expansion("$", "HOME"), Expansion("$(", "date")),
        (),
        (Expansion("~"),),
        (Expansion("$((", "1+2"),),
        (Expansion("`", "id"),),
        (Expansion("$", "y:-z"),),
    )
    assert c.redirects[0].at == 5  # after echo, "...", '$x', ~/d, $((1+2))
    assert c.subshell == 1
    assert parse("ls").commands[0].subshell == 0


def test_watch_runs_its_arguments_as_a_shell_command_line() -> None:
    """`watch 'ls -l'` runs `ls -l` through a shell: the quoted line is a command, not a
    program named "ls -l" (which the checks then called missing)."""
    assert programs("watch 'ls -l'") == ("watch", "ls")
    assert programs('watch -n 5 "df -h | grep sda"') == ("watch", "df", "grep")
    nested = simple_commands("watch -n 1 ls -l")[1]
    assert nested.via == "watch" and [f.name for f in nested.flags] == ["-l"]
