"""The local log of every interaction: a SQLite database under the user data dir.

`HistoryLog(path).record(request, done)` stores one exchange; every stored text (request,
context, options, response) goes through redaction first. `search` and `get` read it back for
`shellfish history`. The file is private (0600); a database from a newer shellfish or a file
that is not SQLite gives a clear `HistoryError` and is never overwritten. A database another
connection keeps locked for longer than `busy_timeout` seconds raises `HistoryBusy`: busy is not
broken, and callers skip the entry rather than tell the user to move the file away.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shellfish.errors import ShellfishError
from shellfish.events import Done
from shellfish.history.migrations import LATEST, migrate, schema_version
from shellfish.request import TaskRequest


class HistoryError(ShellfishError):
    """The history database cannot be opened, read or written."""


class HistoryBusy(HistoryError):
    """Another connection holds the database lock longer than we wait: busy, not broken."""


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    ts: float
    task: str
    request: str
    context: dict[str, Any] | None
    options: dict[str, Any] | None
    model: str
    backend: str
    response: str
    prompt_tokens: int
    completion_tokens: int
    load_ms: float
    first_token_ms: float
    total_ms: float
    finish_reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = (
    "id, ts, task, request, context, options, model, backend, response, prompt_tokens, "
    "completion_tokens, load_ms, first_token_ms, total_ms, finish_reason"
)


class HistoryLog:
    """The interaction log at `path`. Opening is lazy: constructing it touches nothing."""

    def __init__(
        self,
        path: Path,
        *,
        enabled: bool = True,
        redact: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 0.5,
    ) -> None:
        self.path = Path(path)
        # Short: history is written after the answer is shown, and a skipped entry costs less
        # than a user waiting on another process's transaction.
        self.busy_timeout = busy_timeout
        self.enabled = enabled
        self._redact = redact
        self._clock = clock

    # -- connection -------------------------------------------------------------------------

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if not self.path.exists():
            if not create:
                return None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            except OSError as exc:
                raise HistoryError(
                    f"cannot create the history log {self.path}: {exc.strerror}",
                    hint="check the permissions of the data dir, or disable logging with "
                    "`shellfish config set history.enabled false`",
                ) from exc
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._broken(exc) from exc
        try:
            version = schema_version(conn)
            if version > LATEST:
                raise HistoryError(
                    f"the history log {self.path} has schema version {version}, newer than "
                    f"this shellfish understands ({LATEST})",
                    hint="upgrade shellfish; the file was left untouched",
                )
            if version < LATEST:
                migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._broken(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _broken(self, exc: Exception) -> HistoryError:
        if _is_busy(exc):
            return HistoryBusy(
                f"the history log {self.path} is busy (another shellfish holds its lock)",
                hint="try again in a moment; the file is fine",
            )
        return HistoryError(
            f"the history log {self.path} is unreadable ({exc})",
            hint="move the file away to start a new log; it was left untouched",
        )

    def _run(self, create: bool, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._connect(create=create)
        if conn is None:
            return None
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise self._broken(exc) from exc
        finally:
            conn.close()

    def schema_version(self) -> int:
        """The schema version after opening (and migrating) the database; 0 when absent."""
        result = self._run(False, schema_version)
        return int(result or 0)

    # -- writing ----------------------------------------------------------------------------

    def _redactor(self) -> Callable[[str], str]:
        if self._redact is None:
            from shellfish.shell.redact import redact

            self._redact = redact
        return self._redact

    def record(
        self,
        request: TaskRequest,
        done: Done,
        *,
        ts: float | None = None,
    ) -> int | None:
        """Store one finished exchange (redacted); returns its id, or None when disabled."""
        if not self.enabled:
            return None
        from shellfish.shell.redact import exchange_redactor, redact_obj

        # Secrets of the request also go from the answer, where the model may echo them.
        redact = exchange_redactor(
            [request.text, request.context, request.options], self._redactor()
        )
        # The conversation so far is already logged turn by turn; store only the options.
        options = {k: v for k, v in request.options.items() if k != "messages"}
        row = (
            self._clock() if ts is None else ts,
            request.task,
            redact(request.text),
            json.dumps(redact_obj(request.context, redact)) if request.context else None,
            json.dumps(redact_obj(options, redact)) if options else None,
            done.model or (request.model or ""),
            done.backend,
            redact("\n".join(done.texts) if len(done.texts) > 1 else done.text),
            int(done.prompt_tokens),
            int(done.completion_tokens),
            float(done.load_ms),
            float(done.first_token_ms),
            float(done.total_ms),
            done.finish_reason,
        )

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO interactions (ts, task, request, context, options, model, backend, "
                "response, prompt_tokens, completion_tokens, load_ms, first_token_ms, total_ms, "
                "finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

        return int(self._run(True, insert))

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""

        def delete(conn: sqlite3.Connection) -> int:
            return int(conn.execute("DELETE FROM interactions").rowcount)

        return int(self._run(False, delete) or 0)

    # -- reading ----------------------------------------------------------------------------

    def search(
        self,
        query: str | None = None,
        *,
        task: str | None = None,
        backend: str | None = None,
        limit: int = 20,
    ) -> list[HistoryEntry]:
        """Newest first; `query` matches request or response text (case-insensitive)."""
        where: list[str] = []
        params: list[Any] = []
        if query:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(
                "(request LIKE ? ESCAPE '\\' COLLATE NOCASE "
                "OR response LIKE ? ESCAPE '\\' COLLATE NOCASE)"
            )
            params += [f"%{escaped}%", f"%{escaped}%"]
        if task:
            where.append("task = ?")
            params.append(task)
        if backend:
            where.append("backend = ?")
            params.append(backend)
        sql = f"SELECT {_COLUMNS} FROM interactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        params.append(max(0, int(limit)))

        def select(conn: sqlite3.Connection) -> list[HistoryEntry]:
            return [_entry(r) for r in conn.execute(sql, params).fetchall()]

        return list(self._run(False, select) or [])

    def get(self, entry_id: int) -> HistoryEntry | None:
        def select(conn: sqlite3.Connection) -> HistoryEntry | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM interactions WHERE id = ?", (entry_id,)
            ).fetchone()
            return _entry(row) if row else None

        result = self._run(False, select)
        return result if isinstance(result, HistoryEntry) else None

    def count(self) -> int:
        return int(
            self._run(False, lambda c: c.execute("SELECT COUNT(*) FROM interactions").fetchone()[0])
            or 0
        )


# SQLITE_BUSY and SQLITE_LOCKED: sqlite3 names them only from Python 3.11 (as it sets
# `sqlite_errorcode` only from 3.11; 3.10 takes the message test below).
_BUSY_CODES = (5, 6)


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    return HistoryEntry(
        id=int(row[0]),
        ts=float(row[1]),
        task=str(row[2]),
        request=str(row[3]),
        context=_json(row[4]),
        options=_json(row[5]),
        model=str(row[6]),
        backend=str(row[7]),
        response=str(row[8]),
        prompt_tokens=int(row[9]),
        completion_tokens=int(row[10]),
        load_ms=float(row[11]),
        first_token_ms=float(row[12]),
        total_ms=float(row[13]),
        finish_reason=str(row[14]),
    )
