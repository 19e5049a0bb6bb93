"""Exporters: business data (events, usage ledger, OEE, maintenance status) written to InfluxDB as lines.

`Exporter.write` is how every exporter writes: InfluxDB being down or misconfigured means "keep the data and try
again later" (logged once, and its recovery once); lines the server refuses for good are logged and dropped so
they cannot hold back the rest. `CursorExporter` follows a cursor in the business store: it takes the rows after
the cursor in order, writes them, and moves the cursor only once InfluxDB stored them — an outage delays rows but
loses none, and a replay writes the same points again, which InfluxDB overwrites instead of duplicating.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from gateway.errors import SinkConfigError, SinkError
from gateway.sinks.writer import InfluxWriter

log = logging.getLogger(__name__)

BATCH = 500
RETRY_S = 10.0

R = TypeVar("R")


class Exporter:
    """Writes lines stamped in nanoseconds with `writer`; `what` names the data in logs."""

    what = "data"

    def __init__(self, writer: InfluxWriter) -> None:
        self.writer = writer
        self.failing = False

    async def write(self, lines: Sequence[str]) -> bool:
        """True when stored (lines the server refuses for good are logged and dropped), False to retry later."""
        try:
            rejected = await self.writer.write(lines, precision="ns")
        except (SinkError, SinkConfigError) as err:
            if not self.failing:
                log.warning("%s cannot be written to influxdb yet (%s); kept and retried", self.what, err)
            self.failing = True
            return False
        if self.failing:
            log.info("%s are written to influxdb again", self.what)
        self.failing = False
        for bad in rejected:
            log.error("influxdb rejected a line of %s (%s): %.300s", self.what, bad.reason, bad.text)
        return True


class CursorExporter(Exporter, ABC, Generic[R]):
    """Follows a cursor in the business store: `pending` rows after it, `line` per row, `advance` past rows."""

    idle_s = 2.0
    batch = BATCH

    @abstractmethod
    def pending(self, limit: int) -> list[R]:
        """At most `limit` rows after the cursor, in cursor order."""

    @abstractmethod
    def line(self, row: R) -> str | None:
        """The row as one line (None: nothing to write for it)."""

    @abstractmethod
    def advance(self, rows: Sequence[R]) -> None:
        """Move the cursor past `rows` (they are stored)."""

    async def export_once(self) -> int:
        """Write the rows after the cursor; how many (-1: InfluxDB did not take them, retry later)."""
        rows = self.pending(self.batch)
        if not rows:
            return 0
        lines = [line for row in rows if (line := self.line(row)) is not None]
        if not await self.write(lines):
            return -1
        self.advance(rows)
        return len(rows)

    async def run(self) -> None:
        while True:
            n = await self.export_once()
            if n == self.batch:
                continue
            await asyncio.sleep(self.idle_s if n >= 0 else RETRY_S)
