"""gateway/alerts/lifecycle.py: the ISA-18.2 alert lifecycle as a pure state machine, without any database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import lifecycle as lc
from gateway.alerts.lifecycle import Alert, AlertClosed, Step

T0 = 1_700_000_000 * lc.NS
S = lc.NS


def new(*, suppressed: bool = False) -> Alert:
    return lc.raised(T0, suppressed=suppressed).alert


def outcome(step: Step) -> tuple[str, str | None, str | None]:
    return step.alert.state, step.transition, step.notify


# --- every arrow of the module docstring's diagram -----------------------------------------------------------------


def test_raised_is_active_unacknowledged_and_notified() -> None:
    assert outcome(lc.raised(T0, suppressed=False)) == ("active_unacknowledged", "raised", "raised")
    assert new().count == 1


def test_ack_then_clear_closes() -> None:
    acked = lc.acknowledged(new(), T0 + S, by="timur", note="reset")
    assert outcome(acked) == ("acknowledged", "acknowledged", None)
    assert (acked.alert.acked_by, acked.alert.ack_note, acked.alert.acked_ns) == ("timur", "reset", T0 + S)
    cleared = lc.condition_cleared(acked.alert, T0 + 2 * S)
    assert outcome(cleared) == ("closed", "closed", "cleared")
    assert cleared.alert.closed_ns == cleared.alert.cleared_ns == T0 + 2 * S


def test_clear_then_ack_closes() -> None:
    cleared = lc.condition_cleared(new(), T0 + S)
    assert outcome(cleared) == ("cleared_unacknowledged", "cleared", "cleared")
    assert outcome(lc.acknowledged(cleared.alert, T0 + 2 * S, by="x", note="")) == ("closed", "acknowledged", None)


def test_shelve_and_unshelve_while_active() -> None:
    shelved = lc.shelved(new(), T0, by="timur", duration_s=600, note="waiting for a part")
    assert outcome(shelved) == ("shelved", "shelved", None)
    assert shelved.alert.shelved_until_ns == T0 + 600 * S
    assert outcome(lc.unshelved(shelved.alert, T0 + S)) == ("active_unacknowledged", "unshelved", None)


def test_shelved_alert_that_cleared_closes_when_shelving_ends() -> None:
    shelved = lc.shelved(new(), T0, by="x", duration_s=60, note="").alert
    cleared = lc.condition_cleared(shelved, T0 + S)
    assert outcome(cleared) == ("shelved", "cleared", None)  # shelved: nobody is notified
    assert outcome(lc.unshelved(cleared.alert, T0 + 2 * S)) == ("closed", "closed", None)


def test_suppress_and_release_while_active() -> None:
    suppressed = lc.suppressed(new())
    assert outcome(suppressed) == ("suppressed", "suppressed", None)
    assert suppressed.alert.notify_pending  # active and unacknowledged: notified when it returns
    assert outcome(lc.unsuppressed(suppressed.alert, T0 + S)) == ("active_unacknowledged", "unsuppressed", "returned")


def test_suppressed_alert_that_clears_closes_at_once() -> None:
    cleared = lc.condition_cleared(lc.suppressed(new()).alert, T0 + S)
    assert outcome(cleared) == ("closed", "closed", None)


def test_suppressed_cleared_alert_closes_when_maintenance_ends() -> None:
    waiting = lc.condition_cleared(new(), T0 + S).alert
    suppressed = lc.suppressed(waiting).alert
    assert not suppressed.notify_pending
    assert outcome(lc.unsuppressed(suppressed, T0 + 2 * S)) == ("closed", "closed", None)


def test_acknowledged_alert_is_not_notified_on_return() -> None:
    acked = lc.acknowledged(new(), T0, by="x", note="").alert
    suppressed = lc.suppressed(acked).alert
    assert not suppressed.notify_pending
    assert outcome(lc.unsuppressed(suppressed, T0 + S)) == ("acknowledged", "unsuppressed", None)


def test_a_new_occurrence_counts_and_needs_a_new_acknowledgement() -> None:
    acked = lc.acknowledged(new(), T0, by="x", note="n").alert
    again = lc.raised_again(acked, T0 + S, suppressed=False)
    assert outcome(again) == ("active_unacknowledged", "repeated", "repeated")
    assert (again.alert.count, again.alert.acked_by, again.alert.last_raised_ns) == (2, None, T0 + S)


def test_a_cleared_alert_raised_again_is_active_again() -> None:
    waiting = lc.condition_cleared(new(), T0 + S).alert
    again = lc.raised_again(waiting, T0 + 2 * S, suppressed=False).alert
    assert (again.state, again.active, again.cleared_ns) == ("active_unacknowledged", True, None)


def test_occurrence_while_shelved_is_held_back_and_notified_on_return() -> None:
    shelved = lc.shelved(new(), T0, by="x", duration_s=60, note="").alert
    assert not shelved.notify_pending  # the raise itself was notified
    again = lc.raised_again(shelved, T0 + S, suppressed=False)
    assert outcome(again) == ("shelved", "repeated", None)
    assert outcome(lc.unshelved(again.alert, T0 + 2 * S)) == ("active_unacknowledged", "unshelved", "returned")


def test_raised_during_maintenance_is_suppressed_and_notified_when_it_ends() -> None:
    step = lc.raised(T0, suppressed=True)
    assert outcome(step) == ("suppressed", "raised", None)
    assert outcome(lc.unsuppressed(step.alert, T0 + S)) == ("active_unacknowledged", "unsuppressed", "returned")


# --- nothing happens, forbidden actions -----------------------------------------------------------------------------


def test_events_that_change_nothing() -> None:
    acked = lc.acknowledged(new(), T0, by="x", note="").alert
    assert lc.acknowledged(acked, T0 + S, by="y", note="") == Step(acked, None)
    assert lc.unshelved(new(), T0) == Step(new(), None)
    assert lc.unsuppressed(new(), T0) == Step(new(), None)
    waiting = lc.condition_cleared(new(), T0).alert
    assert lc.condition_cleared(waiting, T0 + S) == Step(waiting, None)
    suppressed = lc.suppressed(new()).alert
    assert lc.suppressed(suppressed) == Step(suppressed, None)


EVENTS: dict[str, Callable[[Alert], Step]] = {
    "raise again": lambda a: lc.raised_again(a, T0 + 9 * S, suppressed=False),
    "clear": lambda a: lc.condition_cleared(a, T0 + 9 * S),
    "ack": lambda a: lc.acknowledged(a, T0 + 9 * S, by="x", note=""),
    "shelve": lambda a: lc.shelved(a, T0 + 9 * S, by="x", duration_s=60, note=""),
    "unshelve": lambda a: lc.unshelved(a, T0 + 9 * S),
    "suppress": lc.suppressed,
    "unsuppress": lambda a: lc.unsuppressed(a, T0 + 9 * S),
}


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_a_closed_alert_refuses_every_event(event: str) -> None:
    closed = lc.acknowledged(lc.condition_cleared(new(), T0 + S).alert, T0 + 2 * S, by="x", note="").alert
    assert closed.state == "closed"
    with pytest.raises(AlertClosed, match="closed; nothing to do"):
        EVENTS[event](closed)


# --- shelve expiry and flood window -----------------------------------------------------------------------------------


def test_shelve_period_is_over_at_its_end_and_not_before() -> None:
    shelved = lc.shelved(new(), T0, by="x", duration_s=60, note="").alert
    assert not lc.shelve_over(shelved, T0 + 60 * S - 1)
    assert lc.shelve_over(shelved, T0 + 60 * S)
    assert not lc.shelve_over(new(), T0 + 3600 * S)  # not shelved
    closed = lc.unshelved(lc.condition_cleared(shelved, T0 + S).alert, T0 + 2 * S).alert
    assert not lc.shelve_over(closed, T0 + 3600 * S)


def test_shelving_again_sets_a_new_period() -> None:
    first = lc.shelved(new(), T0, by="x", duration_s=600, note="").alert
    assert lc.shelved(first, T0 + S, by="y", duration_s=60, note="n").alert.shelved_until_ns == T0 + 61 * S


@pytest.mark.parametrize(
    ("transition", "last_ns", "now_ns", "due"),
    [
        ("raised", None, T0, True),  # never notified
        ("raised", T0, T0 + 299 * S, False),  # inside the window
        ("repeated", T0, T0 + 300 * S, True),  # the window is over
        ("returned", T0, T0 + S, False),
        ("cleared", T0, T0 + S, True),  # a clearing always goes
    ],
)
def test_flood_window(transition: str, last_ns: int | None, now_ns: int, due: bool) -> None:
    assert lc.notify_due(transition, last_ns, now_ns, 300 * S) is due


# --- property: random event sequences never reach an inconsistent state ----------------------------------------------


def apply(name: str, a: Alert, now: int) -> Step:
    """One event at `now`, as the book would send it (a new occurrence keeps the machine's suppression)."""
    match name:
        case "raise again":
            return lc.raised_again(a, now, suppressed=a.suppressed)
        case "clear":
            return lc.condition_cleared(a, now)
        case "ack":
            return lc.acknowledged(a, now, by="x", note="")
        case "shelve":
            return lc.shelved(a, now, by="x", duration_s=60, note="")
        case "unshelve" | "tick":
            return lc.unshelved(a, now)
        case "suppress":
            return lc.suppressed(a)
        case _:
            return lc.unsuppressed(a, now)


@settings(max_examples=400)
@given(suppressed=st.booleans(),
       events=st.lists(st.tuples(st.sampled_from([*sorted(EVENTS), "tick"]), st.integers(1, 120)), max_size=25))
def test_random_event_sequences_stay_consistent(suppressed: bool, events: list[tuple[str, int]]) -> None:
    a, now, count = lc.raised(T0, suppressed=suppressed).alert, T0, 1
    for name, dt_s in events:
        now += dt_s * S
        if name == "tick" and not lc.shelve_over(a, now):
            continue
        if a.closed:
            with pytest.raises(AlertClosed):
                apply(name, a, now)
            continue
        before = a
        step = apply(name, a, now)
        a = step.alert
        count += name == "raise again"
        assert (step.transition is None) == (a == before)  # nothing happened <=> nothing changed
        # acknowledged and cleared is closed; an active alert is open; closing happens now, not earlier
        if a.acked and not a.active:
            assert a.closed
        if a.active:
            assert not a.closed
        if a.closed and not before.closed:
            assert a.closed_ns == now
        # hidden alerts notify nobody; acknowledged ones hold no notification back
        if before.hidden and a.hidden:
            assert step.notify is None
        if a.acked:
            assert not a.notify_pending
        assert a.count == count
        assert a.state in (*lc.OPEN_STATES, lc.CLOSED)
