"""The usage ledger and closed months in the business store (gateway/store.py).

`ledger` is append-only: the idempotency key is the primary key and entries are inserted with
`INSERT ... ON CONFLICT (key) DO NOTHING`, so a replay or a restart that rebuilds an entry keeps the first one.
Nothing here updates or deletes an entry; corrections are new entries (see ledger.py).
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterable

from gateway.billing.ledger import LedgerEntry
from gateway.billing.periods import month_span
from gateway.errors import KartechError
from gateway.state.model import iso
from gateway.store import Store

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ledger (
    key TEXT PRIMARY KEY,
    machine TEXT NOT NULL,
    partner TEXT,
    project TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    recorded_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    sign INTEGER NOT NULL,
    reverses TEXT,
    entry TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS ledger_by_partner ON ledger (partner, start_ns)",
    "CREATE INDEX IF NOT EXISTS ledger_by_time ON ledger (start_ns)",
    "CREATE INDEX IF NOT EXISTS ledger_unattributed ON ledger (recorded_ns) WHERE partner IS NULL",
    """CREATE TABLE IF NOT EXISTS billing_months (
    month TEXT PRIMARY KEY,
    closed_ns INTEGER NOT NULL,
    closed_by TEXT NOT NULL
)""",
)


class CloseRefused(KartechError):
    """A month that cannot be closed (not over yet, or closed already); the message says why."""


class LedgerStore:
    """Ledger entries and closed months in a Store; creates its tables when first used."""

    def __init__(self, store: Store) -> None:
        self.store = store
        for sql in SCHEMA:
            store.execute(sql)

    def add(self, entries: Iterable[LedgerEntry]) -> int:
        """Append entries in one transaction; how many were new (entries whose key is stored are skipped)."""
        added = 0
        with self.store.transaction() as db:
            for e in entries:
                cur = db.execute(
                    "INSERT INTO ledger (key, machine, partner, project, start_ns, end_ns, recorded_ns, source, "
                    "sign, reverses, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    (e.key, e.machine, e.partner, e.project, e.start_ns, e.end_ns, e.recorded_ns, e.source, e.sign,
                     e.reverses, json.dumps(e.as_dict(), sort_keys=True, ensure_ascii=False)))
                added += cur.rowcount
        return added

    def entries(self, *, partner: str | None = None, start_ns: int | None = None,
                end_ns: int | None = None) -> list[LedgerEntry]:
        """Entries (of one partner; whose usage overlaps [start_ns, end_ns)) in recorded order."""
        sql, params = "SELECT entry FROM ledger WHERE 1 = 1", list[object]()
        if partner is not None:
            sql += " AND partner = ?"
            params.append(partner)
        if start_ns is not None:
            sql += " AND end_ns >= ?"
            params.append(start_ns)
        if end_ns is not None:
            sql += " AND start_ns < ?"
            params.append(end_ns)
        sql += " ORDER BY recorded_ns, key"
        return [LedgerEntry.from_dict(json.loads(r["entry"])) for r in self.store.query(sql, params)]

    def with_ids(self, *, partner: str | None = None, start_ns: int | None = None, end_ns: int | None = None,
                 unattributed: bool = False, limit: int = 10_000) -> list[tuple[int, LedgerEntry]]:
        """(id, entry) of entries (of one partner, or with no partner; whose usage overlaps [start_ns, end_ns)), in
        recorded order. The id is the entry's row id: stable, since nothing is ever deleted."""
        sql, params = "SELECT rowid AS id, entry FROM ledger WHERE 1 = 1", list[object]()
        if partner is not None:
            sql += " AND partner = ?"
            params.append(partner)
        if unattributed:
            sql += " AND partner IS NULL"
        if start_ns is not None:
            sql += " AND end_ns >= ?"
            params.append(start_ns)
        if end_ns is not None:
            sql += " AND start_ns < ?"
            params.append(end_ns)
        sql += " ORDER BY recorded_ns, key LIMIT ?"
        params.append(limit)
        return [(r["id"], LedgerEntry.from_dict(json.loads(r["entry"]))) for r in self.store.query(sql, params)]

    def key_of(self, entry_id: int) -> str | None:
        row = self.store.one("SELECT key FROM ledger WHERE rowid = ?", (entry_id,))
        return str(row["key"]) if row is not None else None

    def id_of(self, key: str) -> int | None:
        row = self.store.one("SELECT rowid AS id FROM ledger WHERE key = ?", (key,))
        return int(row["id"]) if row is not None else None

    def get(self, key: str) -> LedgerEntry | None:
        row = self.store.one("SELECT entry FROM ledger WHERE key = ?", (key,))
        return LedgerEntry.from_dict(json.loads(row["entry"])) if row is not None else None

    def unattributed(self) -> list[LedgerEntry]:
        """Usage with no partner that has not been assigned (or withdrawn) yet, in recorded order."""
        rows = self.store.query("SELECT entry FROM ledger WHERE partner IS NULL AND sign > 0 AND key NOT IN "
                                "(SELECT reverses FROM ledger WHERE reverses IS NOT NULL) ORDER BY recorded_ns, key")
        return [LedgerEntry.from_dict(json.loads(r["entry"])) for r in rows]

    def corrected(self, key: str) -> bool:
        """Whether the entry was reversed (corrected, assigned or withdrawn) already."""
        return self.store.one("SELECT key FROM ledger WHERE reverses = ?", (key,)) is not None

    def close_month(self, month: str, *, closed_ns: int, by: str) -> bool:
        """Close a month (once; False when it was already closed)."""
        with self.store.transaction() as db:
            cur = db.execute("INSERT INTO billing_months (month, closed_ns, closed_by) VALUES (?, ?, ?) "
                             "ON CONFLICT (month) DO NOTHING", (month, closed_ns, by))
            return cur.rowcount > 0

    def closed(self) -> dict[str, int]:
        return {r["month"]: r["closed_ns"] for r in self.store.query("SELECT month, closed_ns FROM billing_months")}

    def closed_months(self) -> list[tuple[str, int, str]]:
        """(month, when it was closed, by whom), oldest month first."""
        return [(r["month"], r["closed_ns"], r["closed_by"]) for r in self.store.query(
            "SELECT month, closed_ns, closed_by FROM billing_months ORDER BY month")]

    def close_over_month(self, month: str, *, now_ns: int, timezone: str, by: str) -> None:
        """Close `month` (YYYY-MM) once it is over in the site's time zone — the one rule of the API and the CLI;
        `CloseRefused` when it is not over yet or was closed already."""
        _, end_ns = month_span(month, zoneinfo.ZoneInfo(timezone))
        if now_ns < end_ns:
            raise CloseRefused(f"{month} is not over yet in {timezone} (it ends {iso(end_ns)}); a month is closed "
                               "after its end")
        if not self.close_month(month, closed_ns=now_ns, by=by):
            done = next(m for m in self.closed_months() if m[0] == month)
            raise CloseRefused(f"{month} was closed already, at {iso(done[1])} by {done[2]}")
