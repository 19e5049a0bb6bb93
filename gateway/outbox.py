"""The durable outbox: every reading is on disk before its source is acknowledged, until every sink confirmed it.

SQLite in WAL mode, one writer thread. The pipeline appends one row per group commit (all readings that arrived
since the previous commit); each sink has a cursor (the last row it confirmed). Rows behind every cursor are
deleted. On restart each sink resumes after its cursor, oldest first, while live data keeps arriving. Readings
a sink refuses as malformed go to the `dead_letters` table with the server's reason.

Durability: with `durability: full` (default) SQLite syncs each commit to disk, so a committed group survives
kill -9 and power loss; a source is acknowledged only after that commit. With `normal`, a commit survives a
crash of the gateway but the last commits before a power loss may be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from gateway.datadir import private_file
from gateway.errors import KartechError
from gateway.reading import Quality, Reading, storable
from gateway.sinks.base import Rejected

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = 1  # marshal version 4 of a tuple of reading tuples
_QUALITY = {q.value: q for q in Quality}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    format INTEGER NOT NULL,
    n INTEGER NOT NULL,
    first_receive_ns INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    line TEXT NOT NULL,
    readings BLOB NOT NULL
);
"""


class OutboxError(KartechError):
    """The outbox cannot store data right now (disk full, directory not writable, database damaged)."""


def encode(readings: Sequence[Reading]) -> bytes:
    return marshal.dumps(
        tuple([(r.machine, r.signal, r.value, r.unit, r.quality.value, r.source_ns, r.receive_ns) for r in readings]), 4
    )


def decode(payload: bytes) -> list[Reading]:
    rows = marshal.loads(payload)  # noqa: S302 - our own file, written by encode() above
    return [Reading(m, s, v, u, _QUALITY[q], sn, rn) for m, s, v, u, q, sn, rn in rows]


@dataclass(slots=True)
class Row:
    seq: int
    n: int
    nbytes: int
    first_receive_ns: int


class Outbox:
    """Append-only log of reading groups with one cursor per sink. All SQLite work runs on one thread."""

    def __init__(self, path: Path, sinks: Sequence[str], *, max_bytes: int,
                 policy: Literal["backpressure", "drop_oldest"] = "backpressure",
                 durability: Literal["full", "normal"] = "full") -> None:
        self.path = path
        self.sinks = list(sinks)
        self.max_bytes = max_bytes
        self.policy = policy
        self.durability = durability
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self.rows: deque[Row] = deque()
        self.bytes = 0
        self.last_seq = 0
        self.cursors: dict[str, int] = {}
        self.dropped: dict[str, int] = dict.fromkeys(self.sinks, 0)
        # highest group each sink's writer holds in memory and is delivering (drop_oldest does not count those)
        self.taken: dict[str, int] = dict.fromkeys(self.sinks, 0)
        self.dead_lettered: dict[str, int] = dict.fromkeys(self.sinks, 0)
        self.space = asyncio.Event()
        self.space.set()

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (or create) the outbox; raises OutboxError, after which `append` keeps trying to open it."""
        await self._run(self._open)
        self._update_space()

    def _open(self) -> None:
        try:
            private_file(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM outbox").fetchone()
        except (OSError, sqlite3.Error) as err:
            raise OutboxError(f"cannot open the outbox at {self.path}: {err}") from err
        self._db = db
        for seq, n, nbytes, first in db.execute(
                "SELECT seq, n, length(payload), first_receive_ns FROM outbox ORDER BY seq"):
            self.rows.append(Row(seq, n, nbytes, first))
            self.bytes += nbytes
        self.last_seq = self.rows[-1].seq if self.rows else 0
        stored = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
        start = self.rows[0].seq - 1 if self.rows else self.last_seq
        for sink in self.sinks:
            # a sink that is new (or came back after being removed) starts at what is still queued
            self.cursors[sink] = max(int(stored.get(sink, start)), start)
            db.execute("INSERT OR REPLACE INTO cursors (sink, seq) VALUES (?, ?)", (sink, self.cursors[sink]))
        if not self.last_seq:
            self.last_seq = max([int(v) for v in stored.values()] or [0])
        if self.rows:
            log.info("outbox: resuming with %d queued readings in %d groups (%.1f MB)", self.queued_readings(),
                     len(self.rows), self.bytes / 1e6)

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                self._db = None
        await self._run(_close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    # --- writing -------------------------------------------------------------------------------------------
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def _update_space(self) -> None:
        if self.full():
            self.space.clear()
        else:
            self.space.set()

    async def append(self, readings: Sequence[Reading]) -> int:
        """Commit one group to disk and return its sequence number. Raises OutboxError when it cannot."""
        payload = encode(readings)
        first = min(r.receive_ns for r in readings)
        seq = self.last_seq + 1

        def _insert() -> None:
            if self._db is None:
                self._open()  # it failed at start-up (e.g. directory not writable yet): try again
            db = self._require_db()
            try:
                db.execute("INSERT INTO outbox (seq, format, n, first_receive_ns, payload) VALUES (?, ?, ?, ?, ?)",
                           (seq, FORMAT, len(readings), first, payload))
            except sqlite3.Error as err:
                raise OutboxError(f"cannot write the outbox at {self.path}: {err}") from err

        await self._run(_insert)
        self.last_seq = seq
        self.rows.append(Row(seq, len(readings), len(payload), first))
        self.bytes += len(payload)
        self._update_space()
        return seq

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"the outbox at {self.path} is not open")
        return self._db

    async def drop_oldest(self) -> int:
        """Make room under the drop_oldest policy: delete the oldest group; returns readings dropped."""
        if not self.rows:
            return 0
        row = self.rows[0]
        for sink, cur in self.cursors.items():
            if cur < row.seq:
                if row.seq > self.taken.get(sink, 0):  # a group being written right now still reaches the sink
                    self.dropped[sink] += row.n
                self.cursors[sink] = row.seq
        await self._run(lambda: self._delete_upto(row.seq, persist_cursors=True))
        self._forget_upto(row.seq)
        return row.n

    # --- reading and confirming ----------------------------------------------------------------------------
    async def read(self, sink: str, max_readings: int) -> list[tuple[int, list[Reading]]]:
        """The next groups after the sink's cursor, at least one, up to about max_readings readings."""
        after = self.cursors[sink]

        def _select() -> list[tuple[int, bytes]]:
            db = self._require_db()
            out: list[tuple[int, bytes]] = []
            n = 0
            for seq, count, payload in db.execute(
                    "SELECT seq, n, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1000", (after,)):
                if out and n + count > max_readings:
                    break
                out.append((seq, payload))
                n += count
            return out

        return [(seq, decode(p)) for seq, p in await self._run(_select)]

    async def confirm(self, sink: str, upto_seq: int) -> None:
        """The sink has everything up to upto_seq: move its cursor and delete what no sink needs."""
        self.cursors[sink] = max(self.cursors[sink], upto_seq)
        low = min(self.cursors.values())

        cursor = self.cursors[sink]
        delete = bool(self.rows) and self.rows[0].seq <= low

        def _commit() -> None:
            self._require_db().execute("UPDATE cursors SET seq = ? WHERE sink = ?", (cursor, sink))
            if delete:
                self._delete_upto(low, persist_cursors=False)

        await self._run(_commit)
        if delete:
            self._forget_upto(low)

    def _delete_upto(self, seq: int, *, persist_cursors: bool) -> None:
        db = self._require_db()
        db.execute("BEGIN")
        db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
        if persist_cursors:
            db.executemany("UPDATE cursors SET seq = ? WHERE sink = ?", [(v, k) for k, v in self.cursors.items()])
        db.execute("COMMIT")

    def _forget_upto(self, seq: int) -> None:
        while self.rows and self.rows[0].seq <= seq:
            self.bytes -= self.rows.popleft().nbytes
        self._update_space()

    async def dead_letter(self, sink: str, rejected: Sequence[Rejected]) -> None:
        now = time.time_ns()

        def _insert() -> None:
            self._require_db().executemany(
                "INSERT INTO dead_letters (sink, at_ns, reason, line, readings) VALUES (?, ?, ?, ?, ?)",
                [(sink, now, storable(r.reason), storable(r.line), encode(r.readings)) for r in rejected])

        await self._run(_insert)
        self.dead_lettered[sink] += sum(len(r.readings) for r in rejected)

    async def dead_letters(self, sink: str | None = None) -> list[dict[str, Any]]:
        def _select() -> list[dict[str, Any]]:
            q = "SELECT id, sink, at_ns, reason, line FROM dead_letters"
            args: tuple[str, ...] = ()
            if sink is not None:
                q += " WHERE sink = ?"
                args = (sink,)
            return [dict(zip(("id", "sink", "at_ns", "reason", "line"), row, strict=True))
                    for row in self._require_db().execute(q + " ORDER BY id", args)]

        return await self._run(_select)

    # --- figures -------------------------------------------------------------------------------------------
    def queued_readings(self, sink: str | None = None) -> int:
        after = self.cursors.get(sink, self.last_seq) if sink is not None else min(self.cursors.values(), default=0)
        return sum(r.n for r in self.rows if r.seq > after)

    def oldest_age_s(self, sink: str, now_ns: int | None = None) -> float:
        after = self.cursors.get(sink, self.last_seq)
        for r in self.rows:
            if r.seq > after:
                return max(0.0, ((now_ns or time.time_ns()) - r.first_receive_ns) / 1e9)
        return 0.0
