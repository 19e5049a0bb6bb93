"""Times in query parameters: ISO-8601 text to integer nanoseconds, within what the stores can hold."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, status

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# nanoseconds since 1970 in a signed 64-bit integer (SQLite, InfluxDB) reach 2262-04-11
MIN_TIME = _EPOCH
MAX_TIME = datetime(2262, 4, 10, tzinfo=UTC)
# "+05:00" typed into a browser's address bar arrives as " 05:00"
_MANGLED_OFFSET = re.compile(r"^(.*T.*) (\d\d:?\d\d)$")


def parse_time(name: str, text: str) -> int:
    """ISO-8601 text (with Z, an offset, or naive = UTC) to integer nanoseconds since the epoch; 422 otherwise."""
    fixed = _MANGLED_OFFSET.sub(r"\1+\2", text.strip())
    try:
        dt = datetime.fromisoformat(fixed)
    except ValueError:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"{name}: '{text}' is not an ISO-8601 time; use e.g. 2026-11-26T09:00:00Z",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        in_range = MIN_TIME <= dt <= MAX_TIME
    except OverflowError:  # an offset that pushes year 1 or 9999 off the calendar
        in_range = False
    if not in_range:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"{name}: '{text}' is out of range; use a time between 1970-01-01 and 2262-04-10",
        )
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000
