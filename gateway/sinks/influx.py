"""InfluxDB sink: readings as line protocol through the one InfluxDB writer (gateway/sinks/writer.py), history via
InfluxQL."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import httpx

from gateway.config.models import InfluxV1, InfluxV2
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Reading
from gateway.sinks.base import HistoryRow, Rejected, WriteResult
from gateway.sinks.lineproto import QUALITY_SUFFIX, Line, LineEncoder
from gateway.sinks.writer import InfluxWriter, quote_ident, quote_literal

log = logging.getLogger(__name__)


class InfluxSink:
    """Writes readings to one InfluxDB; a rejected line never blocks the good ones of its batch."""

    name = "influxdb"

    def __init__(
        self,
        cfg: InfluxV1 | InfluxV2,
        machines: Mapping[str, MachineMeta],
        metrics: Metrics,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.machines = machines
        self.metrics = metrics
        self._encoder = LineEncoder(machines, cfg.precision)
        self.writer = InfluxWriter(cfg, client, metrics=metrics, name=self.name)
        self._measurement_prefix = ""
        if isinstance(cfg, InfluxV1) and cfg.retention_policy:
            self._measurement_prefix = quote_ident(cfg.retention_policy) + "."
        self._describe_metrics()

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("sink_points_written_total", "counter", "Points (lines) a sink stored.")
        m.describe("sink_write_requests_total", "counter", "Write requests sent, by HTTP status.")
        m.describe("sink_write_errors_total", "counter", "Failed write requests, by reason.")
        m.describe("sink_write_seconds_sum", "counter", "Time spent in write requests.")
        m.describe("sink_write_seconds_count", "counter", "Write requests timed.")
        m.describe("sink_lines_rejected_total", "counter", "Lines (or readings that made no line) rejected for good.")

    async def open(self) -> None:
        """Check the server and target; SinkConfigError says what to fix, SinkRetry means not reachable yet."""
        await self.writer.open()
        log.info("influxdb sink ready", extra={"target": self.writer.target})

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Write readings; `written` counts readings stored, `rejected` holds what the server will never take."""
        encoded = self._encoder.encode(readings)
        rejected = list(encoded.rejected)
        written = await self._write_lines(encoded.lines, rejected) if encoded.lines else 0
        bad_lines = len(rejected)
        if bad_lines:
            self.metrics.inc("sink_lines_rejected_total", bad_lines, sink=self.name)
            log.warning("influxdb rejected lines", extra={"count": bad_lines, "reason": rejected[0].reason})
        return WriteResult(written, rejected)

    async def _write_lines(self, lines: list[Line], rejected: list[Rejected]) -> int:
        """Post lines; returns readings written and adds the lines the server refused to `rejected`."""
        written = sum(len(line.readings) for line in lines)
        for bad in await self.writer.write([line.text for line in lines]):
            line = lines[bad.index]
            rejected.append(Rejected(line.readings, line.text, bad.reason))
            written -= len(line.readings)
        return written

    async def query_history(
        self, machine_id: str, signal: str, start_ns: int, end_ns: int, limit: int
    ) -> list[HistoryRow]:
        """Samples of one signal (start_ns <= ts < end_ns), oldest first, via InfluxQL on /query."""
        meta = self.machines.get(machine_id)
        if meta is None:
            return []
        q = (
            f"SELECT {quote_ident(signal)}, {quote_ident(signal + QUALITY_SUFFIX)} "  # noqa: S608 - names are quoted
            f"FROM {self._measurement_prefix}{quote_ident(meta.kind)} "
            f"WHERE machine = {quote_literal(machine_id)} AND time >= {int(start_ns)} AND time < {int(end_ns)} "
            f"ORDER BY time ASC LIMIT {int(limit)}"
        )
        out: list[HistoryRow] = []
        for ts, value, quality in await self.writer.influxql(q):
            out.append((int(ts), value, quality or "good"))
        return out

    async def close(self) -> None:
        await self.writer.close()
