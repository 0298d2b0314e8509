"""The SQLite interaction log: recording, redaction, search, migrations, bad files, CLI."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
import time

import pytest

from shellfish.cli import main
from shellfish.environment import Environment
from shellfish.events import Done
from shellfish.history.log import HistoryBusy, HistoryError, HistoryLog
from shellfish.history.migrations import LATEST, MIGRATIONS
from shellfish.request import TaskRequest

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
    base.setdefault("texts", [text])
    return Done(**base)


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
    log.record(TaskRequest("suggest", "list hidden"), done(texts=["ls -la", "ls -a -l", "tree -a"]))
    env = _env(tmp_path)
    assert main(["history", "-n", "1"], env) == 0
    # the first command, and how many more: not three commands run together as one
    assert env.stdout.getvalue().rstrip().endswith("list hidden  ->  ls -la (+2 more)")

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


# -- a busy database (issue 15 item 8) ------------------------------------------------------------


def _hold_exclusive_lock(path):
    """Another connection holding the write lock, as a concurrent writer mid-transaction does."""
    HistoryLog(path).record(TaskRequest("ask", "first"), done())  # the file exists, migrated
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_database_is_busy_not_corrupt(tmp_path):
    path = tmp_path / "h.sqlite3"
    holder = _hold_exclusive_lock(path)
    try:
        started = time.monotonic()
        with pytest.raises(HistoryBusy) as info:
            HistoryLog(path).record(TaskRequest("ask", "second"), done())
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = str(info.value)
    assert "busy" in message and "unreadable" not in message and "move the file" not in message
    assert waited < 2.0  # retried briefly, not for 5 s
    assert HistoryLog(path).count() == 1  # nothing lost, nothing half-written


def _writer(path: str, n: int, results) -> None:  # a separate process
    from shellfish.history.log import HistoryBusy as Busy
    from shellfish.history.log import HistoryLog as Log

    log = Log(__import__("pathlib").Path(path), redact=lambda s: s)
    outcome = {"ok": 0, "busy": 0, "other": []}
    for i in range(n):
        try:
            log.record(TaskRequest("ask", f"q{i}"), done())
            outcome["ok"] += 1
        except Busy:
            outcome["busy"] += 1
        except Exception as exc:
            outcome["other"].append(str(exc))
    results.put(outcome)


def test_many_concurrent_writer_processes(tmp_path):
    import multiprocessing

    path = tmp_path / "h.sqlite3"  # absent: the writers also race to create and migrate it
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(path), 25, results)) for _ in range(8)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert [o["other"] for o in outcomes] == [[]] * len(procs)  # never "unreadable"
    stored = sum(o["ok"] for o in outcomes)
    assert stored + sum(o["busy"] for o in outcomes) == 8 * 25
    assert HistoryLog(path).count() == stored


def test_suggest_prints_first_and_skips_a_busy_history(make_env, monkeypatch) -> None:
    import shellfish.client

    env = make_env()
    order: list[str] = []

    class Stream(io.StringIO):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def write(self, text: str) -> int:
            order.append(f"{self.name}: {text.strip()}")
            return super().write(text)

    env.stdout, env.stderr = Stream("stdout"), Stream("stderr")  # type: ignore[misc]

    def fake_route(request, env, policy, cancel):  # a model answering at once
        yield Done(texts=["ls -la"], model="tiny", backend="local")

    monkeypatch.setattr(shellfish.client, "_route", fake_route)
    holder = _hold_exclusive_lock(env.paths.history_db)
    try:
        started = time.monotonic()
        assert main(["suggest", "list files"], env) == 0
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert order[0] == "stdout: ls -la"  # printed before history was even tried
    notes = [line for line in order if line.startswith("stderr")]
    assert len(notes) == 1 and "history" in notes[0] and "not recorded" in notes[0]
    assert "unreadable" not in notes[0]
    assert elapsed < 2.0
    assert HistoryLog(env.paths.history_db).count() == 1  # only the entry written before


def test_suggest_records_after_printing(make_env, monkeypatch) -> None:
    import shellfish.client

    env = make_env()

    def fake_route(request, env, policy, cancel):
        yield Done(texts=["du -sh ."], model="tiny", backend="local")

    monkeypatch.setattr(shellfish.client, "_route", fake_route)
    assert main(["suggest", "disk use here"], env) == 0
    assert env.stdout.getvalue() == "du -sh .\n"
    [entry] = HistoryLog(env.paths.history_db).search()
    assert entry.request == "disk use here" and entry.response == "du -sh ."


def test_the_widget_answers_before_a_busy_history(make_env, monkeypatch) -> None:
    import shellfish.client

    env = make_env("list files\n")

    def fake_route(request, env, policy, cancel):
        yield Done(texts=["ls"], model="tiny", backend="local")

    monkeypatch.setattr(shellfish.client, "_route", fake_route)
    holder = _hold_exclusive_lock(env.paths.history_db)
    try:
        assert main(["widget", "suggest"], env) == 0
        assert "ls" in env.stdout.getvalue()
        assert "not recorded" in env.stderr.getvalue()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert main(["widget", "suggest"], make_env("list files\n")) == 0
    assert [e.response for e in HistoryLog(env.paths.history_db).search()] == ["ls", "ls -la"]


def test_history_cli_on_a_locked_database_says_busy(tmp_path):
    env = _env(tmp_path)
    holder = _hold_exclusive_lock(env.paths.history_db)
    try:
        assert main(["history"], env) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = env.stderr.getvalue()
    assert "busy" in err and "unreadable" not in err and "move the file" not in err
