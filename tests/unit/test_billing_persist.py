"""The ledger's SQLite tables: append-only, idempotent by key, entries read back unchanged."""

from __future__ import annotations

from pathlib import Path

from kit.bill import at, month_entries

from gateway.billing.ledger import correct
from gateway.billing.persist import LedgerStore
from gateway.store import Store


def test_inserting_the_same_entries_twice_keeps_one_and_reads_back_equal(tmp_path: Path) -> None:
    entries = month_entries()
    store = Store(tmp_path / "business.sqlite")
    ledger = LedgerStore(store)
    assert ledger.add(entries) == len(entries)
    assert ledger.add(entries) == 0
    assert ledger.add(entries[:1]) == 0
    assert [r["n"] for r in store.query("SELECT count(*) AS n FROM ledger")] == [len(entries)]
    assert ledger.entries() == sorted(entries, key=lambda e: (e.recorded_ns, e.key))
    assert {e.key for e in ledger.entries(partner="acme")} == {e.key for e in entries if e.partner == "acme"}
    rev, fix = correct(entries[0], recorded_ns=at("2025-04-05 12:00"), by="admin", note="fix", project="tools")
    assert ledger.add([rev, fix, rev]) == 2
    store.close()
    reopened = LedgerStore(Store(tmp_path / "business.sqlite"))  # tables exist already: nothing is lost
    assert len(reopened.entries()) == len(entries) + 2
    assert reopened.close_month("2025-03", closed_ns=at("2025-04-02 00:00"), by="admin") is True
    assert reopened.close_month("2025-03", closed_ns=at("2025-04-09 00:00"), by="other") is False
    assert reopened.closed() == {"2025-03": at("2025-04-02 00:00")}
