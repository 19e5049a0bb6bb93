"""The business store: alerts, notification outbox, events, maintenance log, usage counters, production counts.

SQLite in WAL mode by default (one file in the data directory). Writes are small and rare compared with
telemetry (state changes, alert transitions, counters every few seconds), so one connection guarded by a lock
serves the event loop and the API's worker threads alike. Each domain module keeps its own SQL; this module
owns the schema and the connection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.datadir import private_file
from gateway.reading import storable

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    machine TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_by_machine ON events (machine, ts_ns);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts_ns);
CREATE INDEX IF NOT EXISTS events_to_export ON events (id) WHERE exported = 0;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    machine TEXT NOT NULL,
    lab TEXT,
    severity TEXT NOT NULL,
    active INTEGER NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    suppressed INTEGER NOT NULL DEFAULT 0,
    count INTEGER NOT NULL DEFAULT 1,
    raised_ns INTEGER NOT NULL,
    last_raised_ns INTEGER NOT NULL,
    cleared_ns INTEGER,
    acked_ns INTEGER,
    acked_by TEXT,
    ack_note TEXT,
    shelved_until_ns INTEGER,
    shelved_by TEXT,
    shelve_note TEXT,
    closed_ns INTEGER,
    value TEXT,
    message_en TEXT NOT NULL,
    message_ru TEXT NOT NULL,
    notify_pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (rule, machine) WHERE closed_ns IS NULL;
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (raised_ns);
CREATE TABLE IF NOT EXISTS notify_window (
    rule TEXT NOT NULL, machine TEXT NOT NULL, last_ns INTEGER NOT NULL, PRIMARY KEY (rule, machine)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER,
    channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ns INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    sent_ns INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_ns) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS counters (
    machine TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, updated_ns INTEGER NOT NULL,
    PRIMARY KEY (machine, name)
);
CREATE TABLE IF NOT EXISTS maintenance_baseline (
    machine TEXT NOT NULL, task TEXT NOT NULL, done_ns INTEGER NOT NULL, counters TEXT NOT NULL,
    PRIMARY KEY (machine, task)
);
CREATE TABLE IF NOT EXISTS maintenance_log (
    id INTEGER PRIMARY KEY,
    machine TEXT NOT NULL,
    task TEXT NOT NULL,
    done_ns INTEGER NOT NULL,
    done_by TEXT NOT NULL,
    note TEXT NOT NULL,
    usage TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS production (
    machine TEXT NOT NULL, minute_ns INTEGER NOT NULL, total REAL NOT NULL, good REAL,
    PRIMARY KEY (machine, minute_ns)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Row = sqlite3.Row


def _storable(params: Sequence[Any]) -> list[Any]:
    # a text a machine sent (a job name, a value in a message) may hold what UTF-8 cannot encode: kept escaped
    return [storable(p) if type(p) is str else p for p in params]


class Tx:
    """The connection inside a transaction; every text parameter is made storable."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, _storable(params))


class Store:
    """One SQLite database file; thread-safe through a single lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            private_file(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """All statements inside commit together (or not at all). Inside another transaction, a savepoint: the
        state stage runs one transaction per iteration, and the alert book's own transactions nest in it."""
        with self._lock:
            if self._db.in_transaction:
                self._db.execute("SAVEPOINT nested")
                try:
                    yield Tx(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK TO nested")
                    self._db.execute("RELEASE nested")
                    raise
                self._db.execute("RELEASE nested")
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the id of an inserted row (or the number of changed rows for others)."""
        with self._lock:
            cur = self._db.execute(sql, _storable(params))
            return cur.lastrowid if sql.lstrip().upper().startswith("INSERT") and cur.lastrowid else cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with self._lock:
            row: Row | None = self._db.execute(sql, params).fetchone()
            return row

    # --- small key/value state --------------------------------------------------------------------------------
    def get_json(self, key: str) -> Any:
        row = self.one("SELECT value FROM kv WHERE key = ?", (key,))
        return None if row is None else json.loads(row["value"])

    def put_json(self, key: str, value: Any) -> None:
        self.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     (key, json.dumps(value)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
