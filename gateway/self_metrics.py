"""The gateway's own metrics, written to InfluxDB next to the telemetry (measurement `kartech_gateway`).

Every `interval_s` the writer renders `Metrics` (the same text `/metrics` serves) and writes one line per label
set: tags `site`, `host` and the metric's labels (driver, sink, reason, status), one float field per metric name
without the `kartech_` prefix. A counter that was described but never counted is written as 0, so rates and drop
panels have a zero line instead of no data. Gateway health dashboards need no Prometheus this way.

Best effort on purpose: a failed write is logged once (and its recovery once) and the next snapshot is tried;
these points never go through the durable outbox.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import socket
import time
from collections.abc import Callable

import httpx

from gateway import schema
from gateway.config.models import InfluxV1, InfluxV2
from gateway.errors import SinkConfigError, SinkError
from gateway.metrics import Metrics
from gateway.sinks.lineproto import DIVISOR, LineProtocolError, escape_field_key, escape_measurement, escape_tag
from gateway.sinks.writer import InfluxWriter

log = logging.getLogger(__name__)

MEASUREMENT = schema.GATEWAY
DEFAULT_INTERVAL_S = 10.0

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}

Labels = tuple[tuple[str, str], ...]


def parse_exposition(text: str, prefix: str) -> tuple[dict[Labels, dict[str, float]], dict[str, str]]:
    """Prometheus text -> ({label set: {metric name without prefix: value}}, {name: type})."""
    series: dict[Labels, dict[str, float]] = {}
    types: dict[str, str] = {}
    strip = prefix + "_" if prefix else ""
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name.removeprefix(strip)] = kind
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, raw_labels, raw_value = m.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        labels = tuple(sorted(
            (k, re.sub(r'\\[\\n"]', lambda e: _UNESCAPE[e.group(0)], v))
            for k, v in _LABEL.findall(raw_labels or "")
        ))
        series.setdefault(labels, {})[name.removeprefix(strip)] = value
    return series, types


def snapshot_lines(metrics: Metrics, *, site: str, host: str, ts_ns: int, precision: str = "ns") -> list[str]:
    """Line protocol for the current values of every metric (one line per label set)."""
    series, types = parse_exposition(metrics.render(), metrics.prefix)
    seen = {name for fields in series.values() for name in fields}
    for name, kind in types.items():
        if kind == "counter" and name not in seen:
            series.setdefault((), {})[name] = 0.0
    divisor = DIVISOR[precision]
    base = {schema.SITE: site, schema.HOST: host}
    lines: list[str] = []
    for labels, fields in sorted(series.items()):
        tags = {**dict(labels), **base}
        try:
            head = escape_measurement(MEASUREMENT) + "".join(
                f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v
            )
            body = ",".join(
                f"{escape_field_key(k)}={float(v)!r}" for k, v in sorted(fields.items()) if math.isfinite(v)
            )
        except LineProtocolError as err:
            log.debug("self-metrics line skipped", extra={"labels": labels, "reason": str(err)})
            continue
        if body:
            lines.append(f"{head} {body} {ts_ns // divisor}")
    return lines


class SelfMetricsWriter:
    """Writes a snapshot of `metrics` to the configured InfluxDB every `interval_s` until cancelled."""

    def __init__(
        self,
        metrics: Metrics,
        cfg: InfluxV1 | InfluxV2,
        *,
        site: str,
        host: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        client: httpx.AsyncClient | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.metrics = metrics
        self.cfg = cfg
        self.site = site
        self.host = host or socket.gethostname()
        self.interval_s = interval_s
        self._clock_ns = clock_ns
        self._writer = InfluxWriter(cfg, client)
        self._failing = False

    async def write_once(self) -> bool:
        """Write one snapshot; True when InfluxDB stored it."""
        lines = snapshot_lines(self.metrics, site=self.site, host=self.host, ts_ns=self._clock_ns(),
                               precision=self.cfg.precision)
        if not lines:
            return True
        try:
            rejected = await self._writer.write(lines)
            ok, why = not rejected, rejected[0].reason if rejected else ""
        except (SinkError, SinkConfigError) as err:
            ok, why = False, str(err)
        url = self._writer.write_url
        if ok and self._failing:
            log.info("self-metrics writes recovered", extra={"url": url})
        elif not ok and not self._failing:
            log.warning("self-metrics write to %s failed (%s); retrying every %g s", url, why, self.interval_s)
        self._failing = not ok
        return ok

    async def run(self) -> None:
        try:
            while True:
                await self.write_once()
                await asyncio.sleep(self.interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the HTTP client, unless it was passed in."""
        await self._writer.close()
