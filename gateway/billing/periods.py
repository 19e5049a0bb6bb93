"""Billing periods in the site's time zone: local days and calendar months, splitting time at their boundaries,
and the month an entry is billed in when months get closed.

A month is written `YYYY-MM`. Closing a month fixes its statements: an entry recorded after the month was closed
is billed in the first month after its own that was still open when the entry was recorded (a late correction
goes to the next open month; nothing already sent to a partner changes).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta

NS = 1_000_000_000
Span = tuple[int, int]
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def to_ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def local(ts_ns: int, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts_ns // NS, tz).replace(microsecond=(ts_ns % NS) // 1000)


def parse_month(month: str) -> tuple[int, int]:
    m = MONTH.match(month)
    if m is None:
        raise ValueError(f"{month!r} is not a month; write YYYY-MM, e.g. 2025-03")
    return int(m.group(1)), int(m.group(2))


def month_of(ts_ns: int, tz: zoneinfo.ZoneInfo) -> str:
    d = local(ts_ns, tz)
    return f"{d.year:04d}-{d.month:02d}"


def next_month(month: str) -> str:
    y, m = parse_month(month)
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def month_span(month: str, tz: zoneinfo.ZoneInfo) -> Span:
    """[first local midnight of the month, first local midnight of the next month) in UTC ns."""
    y, m = parse_month(month)
    ny, nm = parse_month(next_month(month))
    return (to_ns(datetime.combine(date(y, m, 1), time(0), tz)),
            to_ns(datetime.combine(date(ny, nm, 1), time(0), tz)))


def day_bounds(start_ns: int, end_ns: int, tz: zoneinfo.ZoneInfo) -> list[int]:
    """Local midnights strictly inside (start_ns, end_ns)."""
    out: list[int] = []
    day = local(start_ns, tz).date() + timedelta(days=1)
    while True:
        b = to_ns(datetime.combine(day, time(0), tz))
        if b >= end_ns:
            return out
        if b > start_ns:
            out.append(b)
        day += timedelta(days=1)


def split_days(spans: Iterable[Span], tz: zoneinfo.ZoneInfo) -> dict[date, list[Span]]:
    """The spans cut at local midnight, grouped by local day (the durations add up to the spans' exactly)."""
    out: dict[date, list[Span]] = {}
    for s, e in spans:
        if e <= s:
            continue
        cursor = s
        for b in [*day_bounds(s, e, tz), e]:
            out.setdefault(local(cursor, tz).date(), []).append((cursor, b))
            cursor = b
    return out


def billed_month(own_month: str, recorded_ns: int, closed: Mapping[str, int]) -> str:
    """The month an entry (or the part of it that fell in `own_month`) is billed in: its own, unless that month
    was closed (at `closed[month]`, UTC ns) before the entry was recorded — then the first later month that was
    not closed by then."""
    month = own_month
    while month in closed and closed[month] <= recorded_ns:
        month = next_month(month)
    return month
