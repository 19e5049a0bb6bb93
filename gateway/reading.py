"""The one record that flows from every driver to everything downstream."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

Value = float | int | bool | str | None


class Quality(enum.StrEnum):
    """OPC UA style quality; a `bad` reading never carries a numeric value."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one signal of one machine.

    Timestamps are integer nanoseconds since the Unix epoch, UTC. `source_ns` is when the machine measured the
    value (or when the gateway received it, if the source has no clock); `receive_ns` is when the gateway got it.
    """

    machine: str
    signal: str
    value: Value
    unit: str | None
    quality: Quality
    source_ns: int
    receive_ns: int


def now_ns() -> int:
    return time.time_ns()


def storable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (a lone surrogate from JSON's "\\ud800") escaped as \\udXXX, so that
    SQLite, a log line or an HTTP body can always take it."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
