"""`shellfish models list`: whole names in a pipe (tab-separated) and on a narrow terminal."""

from __future__ import annotations

import io
import re

from shellfish.cli import main
from shellfish.environment import Environment


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _list(tmp_path, stdout) -> str:
    env = Environment(
        stdout=stdout,
        stderr=io.StringIO(),
        environ={"SHELLFISH_HOME": str(tmp_path / "home"), "SHELLFISH_NO_PROGRESS": "1"},
    )
    assert main(["models", "list"], env) == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", stdout.getvalue())  # what the terminal shows


def test_a_pipe_gets_whole_tab_separated_rows(tmp_path) -> None:
    lines = _list(tmp_path, io.StringIO()).splitlines()
    header = lines[0].split("\t")
    assert header == ["name", "installed", "size", "family", "tasks", "providers", "default"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert all(len(r) == 7 for r in rows.values())
    qwen = rows["qwen2.5-coder-0.5b-shellfish"]  # 28 characters: a table cut it at 80 columns
    assert qwen[1] == "-" and qwen[3] == "causal" and qwen[6] == "default"
    assert "suggest" in qwen[4].split(",")
    assert sum(r[6] == "default" for r in rows.values()) == 1
    assert rows["flan-t5-small"][3] == "seq2seq"


def test_a_narrow_terminal_keeps_names_whole(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    text = _list(tmp_path, Tty())
    plain = [line for line in text.splitlines() if "qwen2.5-coder-0.5b-shellfish" in line]
    assert plain and "qwen2.5-coder-0.5b-shellfish *" in plain[0]  # whole, marked default
    assert "* the default" in text
    assert "qwen2.5-coder-0.5b-instruct " in text
    assert max(len(line) for line in text.splitlines()[1:]) <= 60  # the title is one line
    assert "providers" not in text  # made way for the names under 100 columns


def test_eighty_columns_show_names_state_size_and_family_whole(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = _list(tmp_path, Tty())
    assert "…" not in text and "seq2seq" in text and "installed" in text


def test_a_wide_terminal_shows_every_column(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "140")
    text = _list(tmp_path, Tty())
    assert "providers" in text and "translate, explain" in text
