"""The interface every storage sink implements, and what a write reports back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.errors import SinkError
from gateway.reading import Reading, Value

HistoryRow = tuple[int, Value, str]
"""One history sample: (timestamp in ns UTC, value or None, quality)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Readings a sink will never accept (bad data, not a bad moment): dead-letter them, do not retry."""

    readings: tuple[Reading, ...]
    line: str
    reason: str


@dataclass(slots=True)
class WriteResult:
    written: int
    rejected: list[Rejected] = field(default_factory=list)


class SinkRetry(SinkError):
    """A transient failure: keep the batch and retry, not before `retry_after_s` when the server said so."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Check endpoint and configuration; raise SinkConfigError with what to fix."""

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Store readings; raise SinkRetry when nothing may be assumed stored and a retry can help."""

    async def close(self) -> None: ...


class HistorySource(Protocol):
    async def query_history(
        self, machine_id: str, signal: str, start_ns: int, end_ns: int, limit: int
    ) -> list[HistoryRow]:
        """Samples of one signal with start_ns <= ts < end_ns, oldest first, at most `limit`."""
