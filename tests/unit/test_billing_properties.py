"""Properties of the billing maths, whatever the jobs, rates and event order (hypothesis)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.bill import KINDS, NS, TZ, at, billing

from gateway.billing.attribution import Attributor
from gateway.billing.ledger import entries_from_events
from gateway.billing.periods import split_days
from gateway.billing.sessions import fold_sessions
from gateway.billing.statement import build_statement
from gateway.state.events import Event

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
T0 = at("2025-03-30 12:00")  # two days before a month end
MINUTE = 60 * NS


@st.composite
def machine_jobs(draw: st.DrawFn) -> list[Event]:
    """Back-to-back non-overlapping jobs on two machines, some with offline gaps, names of two partners."""
    out: list[Event] = []
    for machine in ("fdm-01", "cnc-01"):
        t = T0 + draw(st.integers(0, 600)) * MINUTE
        for i in range(draw(st.integers(0, 4))):
            length = draw(st.integers(1, 2000)) * MINUTE + draw(st.integers(0, 59)) * NS
            name = draw(st.sampled_from(["ACME_part", "ACME_pin", "LAB-x", "other"])) + str(i)
            out += [Event(t, machine, "state", {"to": "running"}),
                    Event(t, machine, "job_start", {"job": name, "job_id": None})]
            if draw(st.booleans()) and length > 4 * MINUTE:
                off = t + length // 3
                back = off + draw(st.integers(1, 20)) * MINUTE
                if back < t + length:
                    out += [Event(off, machine, "state", {"to": "offline"}),
                            Event(back, machine, "state", {"to": "running"})]
            end = t + length
            out += [Event(end, machine, "state", {"to": "idle"}),
                    Event(end, machine, "job_end", {"job": name, "result": "completed",
                                                    "material_m": draw(st.sampled_from([0.0, 1.5, 12.25]))})]
            t = end + draw(st.integers(1, 300)) * MINUTE
    return out


@SETTINGS
@given(machine_jobs(), st.randoms(use_true_random=False), st.lists(st.integers(0, 10_000), max_size=30))
def test_no_session_is_counted_twice_whatever_the_order_and_repetition(events: list[Event], rnd: object,
                                                                       repeats: list[int]) -> None:
    import random
    assert isinstance(rnd, random.Random)
    shuffled = list(events) + [events[i % len(events)] for i in repeats] if events else []
    rnd.shuffle(shuffled)
    a, _ = fold_sessions(events, grace_s=300)
    b, _ = fold_sessions(shuffled, grace_s=300)
    assert a == b
    keys = [s.key for s in b]
    assert len(keys) == len(set(keys))
    # every job is billed once: running time never exceeds the job's own wall time, jobs never overlap
    by_machine: dict[str, list[tuple[int, int]]] = {}
    for s in b:
        for span in s.running:
            by_machine.setdefault(s.machine, []).append(span)
    for spans in by_machine.values():
        spans.sort()
        assert all(x[1] <= y[0] for x, y in itertools.pairwise(spans))
    b_entries = entries_from_events(shuffled, Attributor(billing().attribution), grace_s=300)
    assert [e.key for e in b_entries] == keys


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 90 * 24 * 60), st.integers(1, 5 * 24 * 60)), max_size=8))
def test_splitting_at_midnight_and_month_ends_conserves_the_duration(spans: list[tuple[int, int]]) -> None:
    real = [(T0 + s * MINUTE, T0 + (s + d) * MINUTE + 7) for s, d in spans]
    parts = split_days(real, TZ)
    assert sum(e - s for ps in parts.values() for s, e in ps) == sum(e - s for s, e in real)
    for day, ps in parts.items():
        for s, e in ps:
            from gateway.billing.periods import local
            assert local(s, TZ).date() == day
            assert s < e
            assert local(e - 1, TZ).date() == day


@SETTINGS
@given(machine_jobs(), st.sampled_from(["1", "5", "15", "60"]), st.sampled_from(["0", "1234.5", "9000"]),
       st.sampled_from(["0", "7.5", "33"]), st.sampled_from(["added", "included"]), st.sampled_from(["0", "12",
                                                                                                   "16"]))
def test_statement_lines_always_add_up_to_the_total(events: list[Event], inc: str, minimum: str, discount: str,
                                                    vat: str, vat_pct: str) -> None:
    from kit.bill import BILLING
    text = (BILLING.replace("increment_min: 15", f"increment_min: {inc}")
            .replace("minimum_charge: 4500", f"minimum_charge: {minimum}")
            .replace("discount_pct: 10", f"discount_pct: {discount}")
            .replace("  vat_pct: 12\n", f"  vat_pct: {vat_pct}\n  vat: {vat}\n"))
    b = billing(text)
    entries = entries_from_events(events, Attributor(b.attribution), grace_s=300)
    for month in ("2025-03", "2025-04", "2025-05"):
        s = build_statement(entries, billing=b, partner="acme", month=month, kinds=KINDS, timezone="Asia/Almaty",
                            currency="KZT")
        lines = sum((ln.amount for ln in s.lines), Decimal(0))
        assert lines == s.subtotal
        assert sum((a for _, a in s.by_machine), Decimal(0)) == s.subtotal
        assert sum((a for _, a in s.by_project), Decimal(0)) == s.subtotal
        assert s.total == lines - s.discount + (s.vat if vat == "added" else 0)
        for ln in s.lines:
            assert ln.amount == (ln.time + ln.reserved + ln.setup_fee + ln.minimum_topup + ln.material_amount
                                 + ln.energy)
            assert ln.amount.as_tuple().exponent == -2
    # every attributed running minute lands in exactly one month's lines
    total_running = sum(e.running_ns for e in entries if e.partner == "acme")
    billed = 0
    for month in ("2025-03", "2025-04", "2025-05", "2025-06"):
        s = build_statement(entries, billing=b, partner="acme", month=month, kinds=KINDS, timezone="Asia/Almaty",
                            currency="KZT")
        billed += sum(ln.running_ns for ln in s.lines)
    assert billed == total_running
