"""Usage sessions folded from state-engine events: gaps, open jobs, idempotent ledger keys."""

from __future__ import annotations

import pytest
from kit.bill import MONTH_EVENTS, NS, at, job, month_entries, state

from gateway.billing.ledger import Ledger, correct, reversal
from gateway.billing.sessions import fold_sessions
from gateway.state.events import Event


def test_short_gap_neither_splits_nor_is_billed() -> None:
    ev = job("fdm-01", "a", "2025-03-20 08:00", "2025-03-20 10:00", gaps=(("2025-03-20 09:00", "2025-03-20 09:05"),))
    [s], open_ = fold_sessions(ev, grace_s=300)
    assert open_ == []
    assert s.running == ((at("2025-03-20 08:00"), at("2025-03-20 09:00")),
                         (at("2025-03-20 09:05"), at("2025-03-20 10:00")))
    assert s.running_ns == 115 * 60 * NS


def test_long_gap_ends_the_session_at_the_last_reading_and_the_job_goes_on_in_a_new_one() -> None:
    ev = job("cnc-01", "a", "2025-03-25 09:00", "2025-03-25 11:30")
    ev.insert(2, state("2025-03-25 10:00", "cnc-01", "offline", last_seen_ns=at("2025-03-25 09:58")))
    ev.insert(3, state("2025-03-25 11:00", "cnc-01", "running"))
    first, second = fold_sessions(ev, grace_s=300)[0]
    assert (first.segment, first.end_ns, first.ended_by) == (0, at("2025-03-25 09:58"), "gap")
    assert first.running_ns == 58 * 60 * NS
    assert (second.segment, second.start_ns, second.running_ns) == (1, at("2025-03-25 11:00"), 30 * 60 * NS)
    assert first.key != second.key


def test_open_job_is_not_billed_until_it_ends_or_its_gap_outlasts_the_grace() -> None:
    ev = [*job("cnc-01", "a", "2025-03-25 09:00", "2025-03-25 11:30")[:2],
          state("2025-03-25 10:00", "cnc-01", "offline")]
    finished, open_ = fold_sessions(ev, grace_s=300, now_ns=at("2025-03-25 10:02"))
    assert finished == []
    assert len(open_) == 1
    finished, open_ = fold_sessions(ev, grace_s=300, now_ns=at("2025-03-25 10:30"))
    assert open_ == []
    assert finished[0].end_ns == at("2025-03-25 10:00")
    assert finished[0].ended_by == "gap"
    # once telemetry returns, the same first session comes out of the fold
    full = job("cnc-01", "a", "2025-03-25 09:00", "2025-03-25 11:30",
               gaps=(("2025-03-25 10:00", "2025-03-25 11:00"),))
    assert fold_sessions(full, grace_s=300)[0][0] == finished[0]


def test_job_end_without_its_start_is_ignored_and_paused_time_is_not_billed() -> None:
    ev = job("fdm-01", "a", "2025-03-01 10:00", "2025-03-01 11:00")
    assert fold_sessions(ev[2:], grace_s=300) == ([], [])
    ev.insert(2, state("2025-03-01 10:10", "fdm-01", "paused"))
    ev.insert(3, state("2025-03-01 10:30", "fdm-01", "running"))
    [s], _ = fold_sessions(ev, grace_s=300)
    assert s.running_ns == 40 * 60 * NS


def test_replays_in_any_order_with_repeats_give_the_same_ledger() -> None:
    once = month_entries()
    again = month_entries(list(reversed(MONTH_EVENTS)) + MONTH_EVENTS[::3]
                          + [Event(e.ts_ns, e.machine, e.type, dict(e.data), id=99) for e in MONTH_EVENTS])
    assert again == once
    ledger = Ledger(once)
    assert ledger.add_all(again) == 0
    assert len(ledger) == len(once)


def test_corrections_are_new_entries_never_edits() -> None:
    ledger = Ledger(month_entries())
    e = ledger.entries()[0]
    rev, fix = correct(e, recorded_ns=at("2025-04-01 09:00"), by="admin", note="wrong machine", machine="cnc-01")
    assert (rev.key, rev.sign, rev.reverses, rev.source) == (f"{e.key}~rev", -1, e.key, "correction")
    assert (fix.machine, fix.sign, fix.by) == ("cnc-01", 1, "admin")
    assert ledger.add_all([rev, fix, rev]) == 2
    assert ledger.get(e.key) == e
    with pytest.raises(ValueError, match="is itself a reversal"):
        reversal(rev, recorded_ns=0, by="x", note="")
    with pytest.raises(ValueError, match="key of a correction is set by the ledger"):
        correct(e, recorded_ns=0, by="x", note="", key="mine")
