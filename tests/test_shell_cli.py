"""`shellfish init`, `shellfish context`, the hidden `shellfish widget`, and the contract
between the Python side and the shell scripts (markers, request fields, context keys)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import shellfish.client
from shellfish.cli import main
from shellfish.events import Done, Error
from shellfish.request import TaskRequest
from shellfish.shell import markers
from shellfish.shell.context import (
    MAX_FILE_BYTES,
    build_context,
    escape,
    git_branch,
    parse_context,
    read_context_file,
    unescape,
)
from shellfish.shell.init import SHELLS, render, script_path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {shell: (REPO / "shell-hooks" / name).read_text() for shell, name in SHELLS.items()}


def run(make_env, *argv: str, stdin: str = "", **extra: str):
    env = make_env(stdin, **extra)
    code = main(list(argv), env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


# --- the contract between Python and the scripts -------------------------------------------


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_every_marker_appears_in_the_scripts(shell: str) -> None:
    for marker in markers.MARKERS:
        if marker == markers.PID and shell == "bash":
            continue  # bash waits for the CLI synchronously; nothing to kill by pid
        assert marker in SCRIPTS[shell], (shell, marker)
    # and every marker the scripts parse is one the Python side defines
    used = set(re.findall(r"SHELLFISH_[A-Z]+(?=\$'\\t'|\)|\s|;|\"|\\t)", SCRIPTS[shell]))
    parsed = {
        m
        for m in used
        if m
        in {"SHELLFISH_CMD", "SHELLFISH_WARN", "SHELLFISH_ERR", "SHELLFISH_END", "SHELLFISH_PID"}
    }
    assert parsed <= set(markers.MARKERS)
    protocol = (REPO / "docs" / "protocol.md").read_text()
    for marker in (markers.CMD, markers.WARN, markers.ERR, markers.END):
        assert marker in protocol


def test_fast_path_request_fields_match_the_protocol() -> None:
    zsh = SCRIPTS["zsh"]
    for field in (
        '"v":1',
        '"cmd":"generate"',
        '"reply_format":"lines"',
        '"request":',
        '"task":',
        '"text":',
        '"context":',
    ):
        assert field in zsh, field
    # what the zsh fast path sends is a valid TaskRequest
    TaskRequest.from_dict({"task": "suggest", "text": "x", "context": {"cwd": "/"}})
    TaskRequest.from_dict({"task": "fix", "text": "x", "context": {"last_exit_status": 2}})


def test_context_keys_are_the_same_in_python_and_zsh(tmp_path: Path) -> None:
    ctx = build_context(
        parse_context("shell\tzsh 5.9\nos\tlinux\ncmd\t0\t1\t0\t/\tls\n"), cwd=str(tmp_path)
    )
    for key in ctx:
        if key != "git_branch":
            assert f'"{key}":' in SCRIPTS["zsh"], key
    assert '"git_branch":' in SCRIPTS["zsh"]
    for key in ctx["recent"][0]:
        assert f'"{key}":' in SCRIPTS["zsh"], key
    # The fix key sends the exit status under the key the fix prompt reads (issue 14 item 4:
    # the scripts sent `exit_status`, the prompt read `last_exit_status`).
    from shellfish.suggest.prompts import build_messages

    for shell in SHELLS:  # inside a double-quoted shell string the quotes are escaped
        assert re.search(r'\\?"last_exit_status\\?":', SCRIPTS[shell]), shell
        assert not re.search(r'[^_]\\?"exit_status\\?":', SCRIPTS[shell]), shell
    fix = TaskRequest(task="fix", text="ls /nope", context={"last_exit_status": 2})
    assert "Exit status: 2." in build_messages(fix)[-1]["content"]
    for shell in SHELLS:
        assert "# shellfish context v1" in SCRIPTS[shell]
        assert (
            "SHELLFISH_CONTEXT_FILE" in SCRIPTS[shell]
            and "SHELLFISH_CONTEXT_CAPTURE" in SCRIPTS[shell]
        )
        assert "widget" in SCRIPTS[shell] and "--context-extra" in SCRIPTS[shell]


def test_packaged_scripts_are_the_repository_scripts() -> None:
    packaged = REPO / "shellfish" / "data" / "shell-hooks"
    assert packaged.resolve() == (REPO / "shell-hooks").resolve()
    for shell in SHELLS:
        assert script_path(shell).read_text() == SCRIPTS[shell]


def test_both_scripts_share_one_redaction_rule_table() -> None:
    def rules(text: str) -> str:
        return text.split("_shellfish_redact_rules=(\n", 1)[1].split("\n)\n", 1)[0]

    assert rules(SCRIPTS["zsh"]) == rules(SCRIPTS["bash"])


def test_marker_escaping_round_trips() -> None:
    for text in ["plain", "a\\b", "tab\there", "multi\nline\\n", "\\\\t"]:
        esc = markers.escape_payload(text)
        assert "\n" not in esc and "\t" not in esc
        assert markers.unescape_payload(esc) == text
    lines = markers.suggestion_lines(["ls -la", " ls -la ", "", "du -sh"], ["careful"])
    assert markers.parse_lines(lines) == (["ls -la", "du -sh"], ["careful"], None, True)
    assert markers.parse_lines(markers.suggestion_lines(["", " "])) == (
        [],
        [],
        "the model gave no command - rephrase the request",
        True,
    )


# --- shellfish init --------------------------------------------------------------------------


def test_init_zsh_prints_a_script_that_parses(make_env, shellfish_home: Path) -> None:
    code, out, _ = run(make_env, "init", "zsh")
    assert code == 0
    assert out.startswith("# generated by `shellfish init zsh`")
    assert f"_SHELLFISH_RUNTIME_DIR={shellfish_home / 'run'}" in out
    assert SCRIPTS["zsh"] in out
    if shutil.which("zsh"):
        proc = subprocess.run(["zsh", "-n", "-f"], input=out, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_init_bash_and_path(make_env) -> None:
    code, out, _ = run(make_env, "init", "bash")
    assert code == 0 and SCRIPTS["bash"] in out
    if shutil.which("bash"):
        proc = subprocess.run(["bash", "-n"], input=out, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    code, out, _ = run(make_env, "init", "zsh", "--path")
    assert code == 0 and Path(out.strip()).name == "shellfish.zsh" and Path(out.strip()).is_file()


def test_init_rejects_an_unknown_shell(make_env) -> None:
    with pytest.raises(SystemExit) as exc:
        run(make_env, "init", "fish")
    assert exc.value.code == 2
    from shellfish.errors import UsageError

    with pytest.raises(UsageError, match="unsupported shell"):
        render("fish", None)  # type: ignore[arg-type]


# --- shellfish context -----------------------------------------------------------------------


def write_ctx(path: Path, *records: tuple[int, int, str, str]) -> Path:
    lines = ["# shellfish context v1", "shell\tzsh 5.9", "os\tlinux-gnu"]
    lines += [f"cmd\t{e}\t{d}\t0\t{escape(cwd)}\t{escape(cmd)}" for e, d, cwd, cmd in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_context_json_shows_redacted_context(make_env, tmp_path: Path) -> None:
    ctx = write_ctx(
        tmp_path / "s.ctx",
        (0, 5, "/home/a", "ls"),
        (1, 9, "/tmp", "mysql -u root -pHunter2secret db\nSELECT 1"),
    )
    code, out, _ = run(make_env, "context", "--json", SHELLFISH_CONTEXT_FILE=str(ctx))
    assert code == 0
    data = json.loads(out)
    assert "Hunter2secret" not in out
    assert data["recent"][1] == {
        "cmd": "mysql -u root -p[REDACTED] db\nSELECT 1",
        "cwd": "/tmp",
        "exit": 1,
        "duration_ms": 9,
    }
    assert data["shell"] == "zsh 5.9" and data["source"] == "zsh"
    code, out, _ = run(make_env, "context", SHELLFISH_CONTEXT_FILE=str(ctx))
    assert "[exit 1, 9 ms, in /tmp]" in out and "Hunter2secret" not in out


def test_context_off_and_on(make_env, shellfish_home: Path, tmp_path: Path) -> None:
    ctx_dir = shellfish_home / "run" / "context"
    ctx_dir.mkdir(parents=True)
    session = write_ctx(ctx_dir / "123.ctx", (0, 1, "/", "ls"))
    code, _, err = run(make_env, "context", "--off")
    assert code == 0 and "off" in err
    assert (ctx_dir / "off").exists() and not session.exists()
    assert "capture = false" in (shellfish_home / "config" / "config.toml").read_text()
    code, out, _ = run(make_env, "context", "--json")
    assert json.loads(out) is None
    code, _, _ = run(make_env, "context", "--on")
    assert not (ctx_dir / "off").exists()
    code, out, _ = run(make_env, "context", "--json")
    assert json.loads(out) is not None
    # the environment variable turns it off for one session
    code, out, _ = run(make_env, "context", "--json", SHELLFISH_CONTEXT_CAPTURE="off")
    assert json.loads(out) is None


def test_context_file_parsing_is_bounded_and_forgiving(tmp_path: Path) -> None:
    text = "garbage line\ncmd\tnot-a-number\t1\t0\t/\tx\ncmd\t0\t1\t0\t/\tok\tafter tab\n"
    assert [c.cmd for c in parse_context(text).recent] == ["ok\tafter tab"]
    big = tmp_path / "big.ctx"
    with big.open("w") as fh:
        for i in range(20000):
            fh.write(f"cmd\t0\t1\t0\t/\techo {i}\n")
    assert big.stat().st_size > MAX_FILE_BYTES
    session = read_context_file(big, max_commands=5)
    assert [c.cmd for c in session.recent] == [f"echo {i}" for i in range(19995, 20000)]
    assert read_context_file(tmp_path / "missing.ctx").recent == []
    (tmp_path / "bin.ctx").write_bytes(b"cmd\t0\t1\t0\t/\tcaf\xe9 \xff\n")
    assert read_context_file(tmp_path / "bin.ctx").recent[0].cmd == "caf\ufffd \ufffd"
    assert unescape(escape("a\\n\tb\nc")) == "a\\n\tb\nc"


def test_git_branch_from_head(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/feature/x\n")
    (repo / "a" / "b").mkdir(parents=True)
    assert git_branch(repo / "a" / "b") == "feature/x"
    wt = tmp_path / "wt"
    wt.mkdir()
    (tmp_path / "gitdir").mkdir()
    (tmp_path / "gitdir" / "HEAD").write_text("0123456789abcdef0123\n")
    (wt / ".git").write_text(f"gitdir: {tmp_path / 'gitdir'}\n")
    assert git_branch(wt) == "0123456789ab"


# --- shellfish widget (the slow path) --------------------------------------------------------


def fake_stream(events, seen):
    def stream(request, env, **kw):
        seen.append(request)
        yield from events

    return stream


def test_widget_prints_markers_with_validation(make_env, monkeypatch, tmp_path: Path) -> None:
    seen: list[TaskRequest] = []
    monkeypatch.setattr(
        shellfish.client, "stream", fake_stream([Done(texts=["rm -rf ~", "ls"])], seen)
    )
    ctx = write_ctx(tmp_path / "s.ctx", (2, 3, "/", "ls /nope"))
    code, out, _ = run(
        make_env,
        "widget",
        "fix",
        "--context-extra",
        '{"last_exit_status": 2}',
        stdin="ls /nope\n",
        SHELLFISH_CONTEXT_FILE=str(ctx),
    )
    assert code == 0
    cmds, warns, err, ended = markers.parse_lines(out.splitlines())
    assert cmds == ["rm -rf ~", "ls"] and err is None and ended
    assert any(w.startswith("danger: recursive delete") for w in warns)
    request = seen[0]
    assert request.task == "fix" and request.text == "ls /nope"
    assert request.context is not None and request.context["last_exit_status"] == 2
    assert request.context["path"]  # the CLI adds its PATH: nearest program names come from it
    assert request.context["recent"][0]["exit"] == 2


def test_widget_uses_the_engine_warnings_when_given(make_env, monkeypatch) -> None:
    monkeypatch.setattr(
        shellfish.client,
        "stream",
        fake_stream([Done(texts=["frob --x"], extra={"warnings": ["frob: no such flag --x"]})], []),
    )
    _code, out, _ = run(make_env, "widget", "suggest", stdin="frobnicate\n")
    assert markers.parse_lines(out.splitlines())[1] == ["frob: no such flag --x"]


@pytest.mark.parametrize(
    ("stdin", "extra", "events", "expected"),
    [
        ("  \n", "{}", [], "nothing to do: the line is empty"),
        ("x\n", "not json", [], "--context-extra is not JSON"),
        ("x\n", "[1]", [], "--context-extra must be a JSON object"),
        (
            "x\n",
            "{}",
            [
                Error(
                    "model 'q' is not installed",
                    code="model_not_found",
                    hint="run `shellfish models pull q`",
                )
            ],
            "model 'q' is not installed - run `shellfish models pull q`",
        ),
        ("x\n", "{}", [], "no answer came back"),
    ],
)
def test_widget_bad_input_gives_one_error_line(
    make_env, monkeypatch, stdin, extra, events, expected
) -> None:
    monkeypatch.setattr(shellfish.client, "stream", fake_stream(events, []))
    code, out, _ = run(make_env, "widget", "suggest", "--context-extra", extra, stdin=stdin)
    assert code == 0
    cmds, _warns, err, ended = markers.parse_lines(out.splitlines())
    assert cmds == [] and ended and err is not None and err.startswith(expected)


def test_widget_survives_an_unexpected_exception(make_env, monkeypatch) -> None:
    def broken(request, env, **kw):
        raise RuntimeError("boom")
        yield  # pragma: no cover

    monkeypatch.setattr(shellfish.client, "stream", broken)
    _code, out, _ = run(make_env, "widget", "suggest", stdin="x\n")
    assert out.splitlines() == [
        "SHELLFISH_ERR\tinternal error: RuntimeError: boom",
        "SHELLFISH_END",
    ]
