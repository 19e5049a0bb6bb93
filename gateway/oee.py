"""OEE per machine per shift and per day — pure functions over state intervals and production counts.

    planned time   = shift length - planned downtime inside it
    availability A = running time inside planned time / planned time
    performance  P = ideal cycle time x parts made / running time      (machines that count parts and have an
                                                                         ideal cycle time; capped at 100 %)
    quality      Q = good parts / parts made                            (machines that report good or rejects;
                                                                         printers: completed / finished jobs)
    OEE            = A x P x Q, with a factor that is not measured taken as 1 (and shown as null)

Shifts and breaks are wall-clock times in the site's time zone; a shift whose end is at or before its start ends
the next day. A day's OEE sums the planned and running time and the parts of the shifts that start on that day.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from gateway.config.operations import WEEKDAYS, ShiftsSection
from gateway.state.model import RUNNING, iso

NS = 1_000_000_000
Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ShiftWindow:
    shift: str
    day: date
    start_ns: int
    end_ns: int
    breaks: tuple[Span, ...] = ()

    def planned(self) -> list[Span]:
        """The window minus its breaks."""
        out: list[Span] = []
        cursor = self.start_ns
        for s, e in sorted(self.breaks):
            if s > cursor:
                out.append((cursor, min(s, self.end_ns)))
            cursor = max(cursor, e)
        if cursor < self.end_ns:
            out.append((cursor, self.end_ns))
        return [(s, e) for s, e in out if e > s]


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def _at(day: date, hhmm: str, tz: zoneinfo.ZoneInfo) -> datetime:
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(0, 0), tz)
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(h, m), tz)


def _span(day: date, start: str, end: str, tz: zoneinfo.ZoneInfo) -> Span:
    s = _at(day, start, tz)
    e = _at(day, end, tz)
    if e <= s:
        e = _at(day + timedelta(days=1), end, tz)
    return _ns(s), _ns(e)


def overlap(a: Span, b: Span) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def shift_windows(cfg: ShiftsSection, timezone: str, start_ns: int, end_ns: int) -> list[ShiftWindow]:
    """Every shift overlapping [start_ns, end_ns), clipped to it, with the planned downtime inside it."""
    tz = zoneinfo.ZoneInfo(timezone)
    first = datetime.fromtimestamp(start_ns / NS, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end_ns / NS, tz).date()
    out: list[ShiftWindow] = []
    day = first
    while day <= last:
        weekday = WEEKDAYS[day.weekday()]
        for shift in cfg.calendar:
            if weekday not in shift.days:
                continue
            s, e = _span(day, shift.start, shift.end, tz)
            cs, ce = max(s, start_ns), min(e, end_ns)
            if ce <= cs:
                continue
            breaks: list[Span] = []
            for d in (day, day + timedelta(days=1)):
                for b in cfg.planned_downtime:
                    if WEEKDAYS[d.weekday()] not in b.days:
                        continue
                    bs, be = _span(d, b.start, b.end, tz)
                    if overlap((bs, be), (cs, ce)):
                        breaks.append((max(bs, cs), min(be, ce)))
            out.append(ShiftWindow(shift.id, day, cs, ce, tuple(breaks)))
        day += timedelta(days=1)
    out.sort(key=lambda w: w.start_ns)
    return out


def state_intervals(initial: str, changes: Sequence[tuple[int, str]], start_ns: int, end_ns: int) -> list[
        tuple[str, int, int]]:
    """(state, from, to) covering [start_ns, end_ns) given the state at start and the changes (ts, new state)."""
    out: list[tuple[str, int, int]] = []
    state, cursor = initial, start_ns
    for ts, new in sorted(changes):
        if ts <= start_ns:
            state = new
            continue
        if ts >= end_ns:
            break
        out.append((state, cursor, ts))
        state, cursor = new, ts
    out.append((state, cursor, end_ns))
    return [(s, a, b) for s, a, b in out if b > a]


@dataclass(slots=True)
class Totals:
    planned_s: float = 0.0
    running_s: float = 0.0
    total: float = 0.0
    good: float | None = None
    by_state: dict[str, float] = field(default_factory=dict)

    def add(self, other: Totals) -> None:
        self.planned_s += other.planned_s
        self.running_s += other.running_s
        self.total += other.total
        if other.good is not None:
            self.good = (self.good or 0.0) + other.good
        for k, v in other.by_state.items():
            self.by_state[k] = self.by_state.get(k, 0.0) + v


def totals(window: ShiftWindow, intervals: Iterable[tuple[str, int, int]],
           production: Iterable[tuple[int, float, float | None]]) -> Totals:
    t = Totals()
    planned = window.planned()
    t.planned_s = sum(e - s for s, e in planned) / NS
    for state, a, b in intervals:
        inside = sum(overlap((a, b), p) for p in planned) / NS
        if inside:
            t.by_state[state] = t.by_state.get(state, 0.0) + inside
            if state == RUNNING:
                t.running_s += inside
    for minute_ns, total, good in production:
        if window.start_ns <= minute_ns < window.end_ns:
            t.total += total
            if good is not None:
                t.good = (t.good or 0.0) + good
    return t


def factors(t: Totals, ideal_cycle_s: float | None) -> dict[str, Any]:
    """A, P, Q and OEE (fractions 0..1, rounded to 4 places); None where not measured."""
    availability = t.running_s / t.planned_s if t.planned_s > 0 else None
    performance: float | None = None
    capped = False
    if ideal_cycle_s is not None and t.running_s > 0:
        performance = ideal_cycle_s * t.total / t.running_s
        if performance > 1.0:
            performance, capped = 1.0, True
    quality = (max(0.0, t.good) / t.total) if t.good is not None and t.total > 0 else None
    oee = None if availability is None else availability * (performance if performance is not None else 1.0) * (
        quality if quality is not None else 1.0)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {"availability": r(availability), "performance": r(performance), "quality": r(quality), "oee": r(oee),
            "performance_capped": capped, "planned_s": round(t.planned_s, 3), "running_s": round(t.running_s, 3),
            "parts": t.total, "good": t.good,
            "by_state_s": {k: round(v, 3) for k, v in sorted(t.by_state.items())}}


def oee_report(windows: Sequence[ShiftWindow], initial: str, changes: Sequence[tuple[int, str]],
               production: Sequence[tuple[int, float, float | None]], ideal_cycle_s: float | None) -> dict[str, Any]:
    """Per shift and per day."""
    shifts: list[dict[str, Any]] = []
    days: dict[date, Totals] = {}
    for w in windows:
        t = totals(w, state_intervals(initial, changes, w.start_ns, w.end_ns), production)
        shifts.append({"shift": w.shift, "day": w.day.isoformat(), "start": iso(w.start_ns), "end": iso(w.end_ns),
                       **factors(t, ideal_cycle_s)})
        days.setdefault(w.day, Totals()).add(t)
    return {"shifts": shifts,
            "days": [{"day": d.isoformat(), **factors(t, ideal_cycle_s)} for d, t in sorted(days.items())]}
