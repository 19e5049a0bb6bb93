"""Local history: readings in an on-disk SQLite database for the web page and API, kept for `retention_days`."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from gateway.datadir import private_file
from gateway.errors import SinkConfigError
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Quality, Reading, Value, storable
from gateway.sinks.base import HistoryRow, Rejected, SinkRetry, WriteResult

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    machine TEXT NOT NULL,
    signal  TEXT NOT NULL,
    ts_ns   INTEGER NOT NULL,
    value,
    vtype   TEXT,
    quality TEXT NOT NULL,
    PRIMARY KEY (machine, signal, ts_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    machine TEXT NOT NULL,
    signal  TEXT NOT NULL,
    PRIMARY KEY (machine, signal)
) WITHOUT ROWID;
"""
_INSERT = "INSERT OR REPLACE INTO readings (machine, signal, ts_ns, value, vtype, quality) VALUES (?, ?, ?, ?, ?, ?)"
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_NS_PER_DAY = 86_400 * 1_000_000_000

Row = tuple[str, str, int, Value, str | None, str]


def _row(r: Reading) -> Row | str:
    """The table row of a reading, or why it cannot be stored."""
    v = r.value
    if not _INT_MIN <= r.source_ns <= _INT_MAX:
        return f"signal {r.signal!r}: timestamp {r.source_ns} ns is out of the 64-bit range"
    if r.quality is Quality.BAD or v is None:
        return (r.machine, r.signal, r.source_ns, None, None, r.quality.value)
    if type(v) is float:
        if not math.isfinite(v):
            return f"signal {r.signal!r}: {v!r} is not a finite number"
        vtype = "f"
    elif type(v) is bool:
        vtype = "b"
    elif type(v) is int:
        if not _INT_MIN <= v <= _INT_MAX:
            return f"signal {r.signal!r}: integer {v} is out of the 64-bit range"
        vtype = "i"
    elif type(v) is str:
        if not v.isascii() and storable(v) is not v:
            return f"signal {r.signal!r}: string {v[:40]!r} holds a lone surrogate, which is not UTF-8"
        vtype = "s"
    else:
        return f"signal {r.signal!r}: value type {type(v).__name__} is not supported"
    return (r.machine, r.signal, r.source_ns, v, vtype, r.quality.value)


def _value(v: Value, vtype: str | None) -> Value:
    if vtype == "b":
        return bool(v)
    if vtype == "f" and v is not None:
        return float(v)
    return v


class LocalHistory:
    """SQLite (WAL) history; one connection, used by one worker thread at a time, never on the event loop."""

    name = "history"

    def __init__(
        self, path: Path, machines: Mapping[str, MachineMeta], metrics: Metrics, retention_days: float
    ) -> None:
        self.path = Path(path)
        self.machines = machines
        self.metrics = metrics
        self.retention_ns = int(retention_days * _NS_PER_DAY)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        metrics.describe("sink_points_written_total", "counter", "Points (lines) a sink stored.")
        metrics.describe("sink_lines_rejected_total", "counter", "Lines (or readings) rejected for good.")
        metrics.describe("history_rows_purged_total", "counter", "Local history rows deleted by retention.")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise SinkConfigError(f"local history {self.path} is not open")
        conn = self._conn
        async with self._lock:
            try:
                return await asyncio.to_thread(fn, conn)
            except sqlite3.OperationalError as err:  # locked, disk full, I/O error: may pass
                raise SinkRetry(f"local history {self.path}: {err}") from err

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            private_file(self.path)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError:
                conn.close()
                raise
            return conn

        try:
            self._conn = await asyncio.to_thread(connect)
        except (OSError, sqlite3.DatabaseError) as err:
            raise SinkConfigError(
                f"cannot open the local history at {self.path}: {err}; check storage.data_dir and its permissions"
            ) from err

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Insert or replace (same machine, signal, ts_ns) in one transaction."""
        rows: list[Row] = []
        rejected: list[Rejected] = []
        for r in readings:
            row = _row(r) if r.machine in self.machines else f"unknown machine {r.machine!r}"
            if isinstance(row, str):
                rejected.append(Rejected((r,), "", row))
            else:
                rows.append(row)
        if rows:
            series = sorted({(row[0], row[1]) for row in rows})

            def insert(conn: sqlite3.Connection) -> None:
                with conn:
                    conn.execute("BEGIN")
                    conn.executemany("INSERT OR IGNORE INTO series (machine, signal) VALUES (?, ?)", series)
                    conn.executemany(_INSERT, rows)

            await self._run(insert)
            self.metrics.inc("sink_points_written_total", len(rows), sink=self.name)
        if rejected:
            self.metrics.inc("sink_lines_rejected_total", len(rejected), sink=self.name)
        return WriteResult(len(rows), rejected)

    async def query_history(
        self, machine_id: str, signal: str, start_ns: int, end_ns: int, limit: int
    ) -> list[HistoryRow]:
        """Samples of one signal (start_ns <= ts < end_ns), oldest first."""

        def select(conn: sqlite3.Connection) -> list[tuple[int, Value, str | None, str]]:
            return conn.execute(
                "SELECT ts_ns, value, vtype, quality FROM readings WHERE machine = ? AND signal = ? "
                "AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns LIMIT ?",
                (machine_id, signal, start_ns, end_ns, limit),
            ).fetchall()

        return [(ts, _value(v, vtype), q) for ts, v, vtype, q in await self._run(select)]

    async def purge(self, now_ns: int | None = None) -> int:
        """Delete rows older than the retention; returns how many."""
        cutoff = (time.time_ns() if now_ns is None else now_ns) - self.retention_ns

        def delete(conn: sqlite3.Connection) -> int:
            deleted = 0
            for machine, signal in conn.execute("SELECT machine, signal FROM series").fetchall():
                with conn:
                    conn.execute("BEGIN")
                    cur = conn.execute(
                        "DELETE FROM readings WHERE machine = ? AND signal = ? AND ts_ns < ?", (machine, signal, cutoff)
                    )
                    deleted += cur.rowcount
            return deleted

        deleted = await self._run(delete)
        if deleted:
            self.metrics.inc("history_rows_purged_total", deleted)
            log.info("purged local history", extra={"rows": deleted, "cutoff_ns": cutoff})
        return deleted

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            async with self._lock:
                await asyncio.to_thread(conn.close)
