"""Schema migrations of the history database, tracked by SQLite's `PRAGMA user_version`.

Each migration is a list of statements that takes the schema from version N-1 to N. Never edit
a released migration; append a new one. Opening a database runs the missing ones in order,
inside one transaction each, so a crash half-way leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: one row per interaction.
    (
        """
        CREATE TABLE interactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            task TEXT NOT NULL,
            request TEXT NOT NULL,
            context TEXT,
            model TEXT NOT NULL DEFAULT '',
            backend TEXT NOT NULL DEFAULT '',
            response TEXT NOT NULL DEFAULT '',
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            total_ms REAL NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX interactions_ts ON interactions(ts)",
    ),
    # 2: finer timings, how the answer ended, and the request options (ask context, languages).
    (
        "ALTER TABLE interactions ADD COLUMN load_ms REAL NOT NULL DEFAULT 0",
        "ALTER TABLE interactions ADD COLUMN first_token_ms REAL NOT NULL DEFAULT 0",
        "ALTER TABLE interactions ADD COLUMN finish_reason TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE interactions ADD COLUMN options TEXT",
        "CREATE INDEX interactions_task ON interactions(task)",
    ),
)

LATEST = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> int:
    """Bring the schema to `target` (default: latest); returns the version it started from.

    The connection must be in autocommit mode (`isolation_level=None`) so that the explicit
    BEGIN/COMMIT below wrap each step.
    """
    start = schema_version(conn)
    for version in range(start + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            if schema_version(conn) >= version:
                conn.execute("ROLLBACK")
                continue
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start
