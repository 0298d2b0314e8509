"""The SQLite interaction log: recording, redaction, search, migrations, bad files, CLI."""

from __future__ import annotations

import io
import json
import sqlite3
import stat

import pytest

from shellfish.cli import main
from shellfish.environment import Environment
from shellfish.events import Done
from shellfish.history.log import HistoryError, HistoryLog
from shellfish.history.migrations import LATEST, MIGRATIONS
from shellfish.tasks.request import TaskRequest

SECRET = "sk-proj-Zx9QwErTyUiOp1234567890abcdEFGH"
PASSWORD = "hunter2-very-secret"


def done(text: str = "ls -la", **kw) -> Done:
    base = {
        "model": "tiny",
        "backend": "local",
        "prompt_tokens": 12,
        "completion_tokens": 4,
        "load_ms": 5.0,
        "first_token_ms": 20.0,
        "total_ms": 80.0,
    }
    base.update(kw)
    return Done(texts=[text], **base)


def test_record_and_read_back(tmp_path):
    log = HistoryLog(tmp_path / "h.sqlite3", clock=lambda: 1000.0)
    req = TaskRequest("suggest", "list files", context={"cwd": "/tmp"}, options={"to": "de"})
    entry_id = log.record(req, done())
    entry = log.get(entry_id)
    assert entry is not None
    assert (entry.task, entry.request, entry.response, entry.model, entry.backend) == (
        "suggest",
        "list files",
        "ls -la",
        "tiny",
        "local",
    )
    assert (entry.prompt_tokens, entry.completion_tokens, entry.total_ms) == (12, 4, 80.0)
    assert entry.first_token_ms == 20.0 and entry.load_ms == 5.0 and entry.ts == 1000.0
    assert entry.context == {"cwd": "/tmp"} and entry.options == {"to": "de"}
    assert stat.S_IMODE((tmp_path / "h.sqlite3").stat().st_mode) == 0o600
    assert log.count() == 1


def test_seeded_secrets_never_reach_the_file(tmp_path):
    path = tmp_path / "h.sqlite3"
    log = HistoryLog(path)
    req = TaskRequest(
        "ask",
        f"why does OPENAI_API_KEY={SECRET} fail",
        context={"cwd": "/srv", "recent_commands": [f"mysql --password={PASSWORD}"]},
        options={
            "context": f"password: {PASSWORD}",
            "messages": [{"role": "user", "content": SECRET}],
        },
    )
    log.record(req, done(f"the key {SECRET} is revoked"))
    raw = path.read_bytes()
    assert SECRET.encode() not in raw and PASSWORD.encode() not in raw
    entry = log.search()[0]
    assert "[REDACTED]" in entry.request and "[REDACTED]" in entry.response
    assert PASSWORD not in json.dumps(entry.context) and "messages" not in (entry.options or {})


def test_a_secret_the_model_echoes_is_not_stored(tmp_path):
    """`explain 'mysql -phunter2 ...'`: the answer repeats the password in plain prose."""
    path = tmp_path / "h.sqlite3"
    log = HistoryLog(path)
    req = TaskRequest("explain", "mysql -u root -pHunt3rTwo shop < dump.sql")
    log.record(req, done("Connects as root with the password Hunt3rTwo and loads dump.sql."))
    assert b"Hunt3rTwo" not in path.read_bytes()
    entry = log.search()[0]
    assert entry.response == "Connects as root with the password [REDACTED] and loads dump.sql."


def test_search_filters_and_order(tmp_path):
    times = iter(range(100))
    log = HistoryLog(tmp_path / "h.sqlite3", clock=lambda: float(next(times)))
    log.record(TaskRequest("suggest", "find big files"), done("du -ah | sort -h"))
    log.record(TaskRequest("explain", "tar xzf a.tgz"), done("extracts", backend="remote"))
    log.record(TaskRequest("suggest", "100% disk _usage_"), done("df -h"))
    assert [e.request for e in log.search()] == [
        "100% disk _usage_",
        "tar xzf a.tgz",
        "find big files",
    ]
    assert [e.request for e in log.search("SORT")] == ["find big files"]  # response, any case
    assert [e.request for e in log.search("100%")] == ["100% disk _usage_"]
    assert log.search("0%_") == []  # % and _ are literal, not wildcards
    assert [e.task for e in log.search(task="explain")] == ["explain"]
    assert [e.backend for e in log.search(backend="remote")] == ["remote"]
    assert len(log.search(limit=2)) == 2
    assert log.get(999) is None


def test_disabled_log_writes_nothing(tmp_path):
    path = tmp_path / "h.sqlite3"
    assert HistoryLog(path, enabled=False).record(TaskRequest("ask", "x"), done()) is None
    assert not path.exists()
    assert HistoryLog(path).search() == [] and not path.exists()  # reading creates nothing


def test_migrates_a_version_1_database(tmp_path):
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO interactions (ts, task, request, response, model, backend, "
        "total_ms) VALUES (5, 'suggest', 'old request', 'old answer', 'm', 'local', 9)"
    )
    conn.close()
    log = HistoryLog(path)
    assert log.schema_version() == LATEST == 2
    old = log.search()[0]
    assert (old.request, old.response, old.total_ms, old.finish_reason) == (
        "old request",
        "old answer",
        9.0,
        "",
    )
    log.record(TaskRequest("ask", "new"), done(finish_reason="length"))
    assert log.search()[0].finish_reason == "length"


def test_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(HistoryError) as info:
        HistoryLog(path).record(TaskRequest("ask", "x"), done())
    assert "schema version 99" in str(info.value) and "upgrade shellfish" in str(info.value)
    assert path.read_bytes() == before


def test_corrupt_file_is_a_clear_error_and_kept(tmp_path):
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(HistoryError) as info:
        HistoryLog(path).search()
    assert "unreadable" in str(info.value) and "move the file away" in str(info.value)
    assert path.read_bytes() == before


def test_unwritable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistoryError) as info:
        HistoryLog(blocker / "sub" / "h.sqlite3").record(TaskRequest("ask", "x"), done())
    assert "history.enabled false" in str(info.value)


def _env(tmp_path, **extra) -> Environment:
    environ = {"SHELLFISH_HOME": str(tmp_path / "home"), **extra}
    return Environment(
        stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ=environ
    )


def test_history_cli(tmp_path):
    env = _env(tmp_path)
    log = HistoryLog(env.paths.history_db)
    log.record(TaskRequest("suggest", "find big files"), done("du -ah | sort -h"))
    log.record(TaskRequest("explain", "tar xzf a.tgz"), done("extracts an archive"))
    assert main(["history"], env) == 0
    lines = env.stdout.getvalue().splitlines()
    assert len(lines) == 2 and "find big files" in lines[0] and "tar xzf" in lines[1]

    env = _env(tmp_path)
    assert main(["history", "archive", "--json"], env) == 0
    rows = [json.loads(line) for line in env.stdout.getvalue().splitlines()]
    assert [r["request"] for r in rows] == ["tar xzf a.tgz"]

    env = _env(tmp_path)
    assert main(["history", "--show", str(rows[0]["id"])], env) == 0
    assert "extracts an archive" in env.stdout.getvalue()

    env = _env(tmp_path)
    assert main(["history", "--show", "12345"], env) == 2
    assert "no history entry 12345" in env.stderr.getvalue()

    env = _env(tmp_path)
    assert main(["history", "--clear"], env) == 0
    assert log.count() == 0


def test_history_cli_on_a_corrupt_file(tmp_path):
    env = _env(tmp_path)
    env.paths.history_db.parent.mkdir(parents=True)
    env.paths.history_db.write_bytes(b"garbage" * 200)
    assert main(["history"], env) == 1
    err = env.stderr.getvalue()
    assert "unreadable" in err and "Traceback" not in err
