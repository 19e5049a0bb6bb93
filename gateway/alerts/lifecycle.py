"""The alert lifecycle after ISA-18.2 as a pure state machine: no store, no clock, no I/O.

States of one alert (rule x machine):

    active_unacknowledged --ack--> acknowledged --condition clears--> closed
    active_unacknowledged --condition clears--> cleared_unacknowledged --ack--> closed
    any open state --shelve--> shelved --period over / unshelve--> back (closed if it cleared meanwhile)
    any open state --machine in maintenance--> suppressed --maintenance over--> back (closed if it cleared)

While an alert is open, a new occurrence of its condition does not open another alert: it raises the count (and
needs a new acknowledgement). An occurrence while shelved or suppressed notifies nobody but is remembered
(`notify_pending`), and notified when the alert comes back still active and unacknowledged. A closed alert never
changes again; acting on it raises `AlertClosed`.

Each event is a function `(Alert, ...) -> Step`: the new value, the transition to record (None: nothing
happened) and the notification to send, if any (`notify_due` applies the flood window to it). The store
(gateway/alerts/book.py) only loads, applies and persists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.errors import KartechError
from gateway.schema import ALERT_STATES

NS = 1_000_000_000
ACTIVE_UNACKNOWLEDGED, ACKNOWLEDGED, CLEARED_UNACKNOWLEDGED, SHELVED, SUPPRESSED, CLOSED = ALERT_STATES
OPEN_STATES = ALERT_STATES[:-1]


class AlertNotFound(KartechError):
    """No alert with this id."""


class AlertClosed(KartechError):
    """The alert is closed; nothing more can be done with it."""


@dataclass(frozen=True, slots=True)
class Alert:
    """What the lifecycle of one alert depends on (times in ns since the epoch)."""

    raised_ns: int
    last_raised_ns: int
    active: bool = True
    acked: bool = False
    suppressed: bool = False
    count: int = 1
    cleared_ns: int | None = None
    acked_ns: int | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    shelved_until_ns: int | None = None
    shelved_by: str | None = None
    shelve_note: str | None = None
    closed_ns: int | None = None
    notify_pending: bool = False

    @property
    def state(self) -> str:
        if self.closed_ns is not None:
            return CLOSED
        if self.shelved_until_ns is not None:
            return SHELVED
        if self.suppressed:
            return SUPPRESSED
        if self.active:
            return ACKNOWLEDGED if self.acked else ACTIVE_UNACKNOWLEDGED
        return CLEARED_UNACKNOWLEDGED

    @property
    def closed(self) -> bool:
        return self.closed_ns is not None

    @property
    def hidden(self) -> bool:
        """Shelved or suppressed: shown to nobody, notified to nobody."""
        return self.shelved_until_ns is not None or self.suppressed

    def must_be_open(self, what: str = "alert") -> None:
        if self.closed_ns is not None:
            raise AlertClosed(f"{what} is closed; nothing to do")


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one event: the new value, the transition to record (None: nothing changed) and the
    transition to notify channels about (None: nobody)."""

    alert: Alert
    transition: str | None
    notify: str | None = None


def raised(now_ns: int, *, suppressed: bool) -> Step:
    """The condition became true and no alert of its rule and machine is open: a new alert."""
    alert = Alert(raised_ns=now_ns, last_raised_ns=now_ns, suppressed=suppressed, notify_pending=suppressed)
    return Step(alert, "raised", None if suppressed else "raised")


def raised_again(a: Alert, now_ns: int, *, suppressed: bool) -> Step:
    """One more occurrence of an open alert: active again, count + 1, and it needs a new acknowledgement."""
    a.must_be_open()
    new = replace(a, active=True, acked=False, acked_ns=None, acked_by=None, ack_note=None, cleared_ns=None,
                  count=a.count + 1, last_raised_ns=now_ns, suppressed=suppressed)
    if new.hidden:
        return Step(replace(new, notify_pending=True), "repeated")
    return Step(replace(new, notify_pending=False), "repeated", "repeated")


def condition_cleared(a: Alert, now_ns: int) -> Step:
    """The condition is gone: acknowledged (or suppressed) alerts close, others wait for an acknowledgement."""
    a.must_be_open()
    if not a.active:
        return Step(a, None)
    closes = a.acked or a.suppressed
    new = replace(a, active=False, cleared_ns=now_ns, notify_pending=False, closed_ns=now_ns if closes else None)
    return Step(new, CLOSED if closes else "cleared", None if a.hidden else "cleared")


def acknowledged(a: Alert, now_ns: int, *, by: str, note: str) -> Step:
    """Someone acknowledged the alert; it closes when its condition has already cleared."""
    a.must_be_open()
    if a.acked:
        return Step(a, None)
    new = replace(a, acked=True, acked_ns=now_ns, acked_by=by, ack_note=note, notify_pending=False,
                  closed_ns=None if a.active else now_ns)
    return Step(new, "acknowledged")


def shelved(a: Alert, now_ns: int, *, by: str, duration_s: float, note: str) -> Step:
    """Hidden for `duration_s` (shelving again sets a new period)."""
    a.must_be_open()
    return Step(replace(a, shelved_until_ns=now_ns + int(duration_s * NS), shelved_by=by, shelve_note=note),
                "shelved")


def unshelved(a: Alert, now_ns: int) -> Step:
    """Shelving ends (by hand, or its period is over: see `shelve_over`)."""
    a.must_be_open()
    if a.shelved_until_ns is None:
        return Step(a, None)
    return _back(replace(a, shelved_until_ns=None), now_ns, "unshelved")


def shelve_over(a: Alert, now_ns: int) -> bool:
    """Whether the shelving period of an open alert is over at `now_ns`."""
    return a.closed_ns is None and a.shelved_until_ns is not None and a.shelved_until_ns <= now_ns


def suppressed(a: Alert) -> Step:
    """The machine entered maintenance: hidden; an active unacknowledged alert is notified when it returns."""
    a.must_be_open()
    if a.suppressed:
        return Step(a, None)
    return Step(replace(a, suppressed=True, notify_pending=a.active and not a.acked), "suppressed")


def unsuppressed(a: Alert, now_ns: int) -> Step:
    """The machine left maintenance."""
    a.must_be_open()
    if not a.suppressed:
        return Step(a, None)
    return _back(replace(a, suppressed=False), now_ns, "unsuppressed")


def _back(a: Alert, now_ns: int, transition: str) -> Step:
    """Back from shelved or suppressed: closed if it cleared meanwhile, else shown (and notified, when an
    occurrence was held back) again."""
    if not a.active:
        return Step(replace(a, closed_ns=now_ns), CLOSED)
    if not a.hidden and not a.acked and a.notify_pending:
        return Step(replace(a, notify_pending=False), transition, "returned")
    return Step(a, transition)


def notify_due(transition: str, last_ns: int | None, now_ns: int, window_ns: int) -> bool:
    """Flood protection: at most one notification per rule and machine per window; a `cleared` always goes."""
    return transition == "cleared" or last_ns is None or now_ns - last_ns >= window_ns
