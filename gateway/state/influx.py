"""Events to InfluxDB: the `events` measurement, for Grafana annotations.

Events are taken from the business store in id order and marked exported once InfluxDB accepted them, so an
InfluxDB outage delays them but loses none; a replay writes the same points again (same tags and timestamp),
which InfluxDB overwrites instead of duplicating.

    events,lab=printfarm,machine=x1c-01,site=kartech,type=state title="x1c-01: idle → running",text="...",
        from="idle",to="running",duration_s=12.5,event_id=17i 1794985200000000000
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from gateway.config.models import InfluxV1, InfluxV2
from gateway.machines import MachineMeta
from gateway.sinks.influx import write_target
from gateway.state.events import Event
from gateway.store import Store

log = logging.getLogger(__name__)

BATCH = 500
IDLE_S = 2.0
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": " ", "\r": " ", "\t": " "})


def escape_key(s: str) -> str:
    """A tag key, tag value or field key (our names are slugs; anything odd is escaped or blanked)."""
    return s.rstrip("\\").translate(_KEY)


def quote_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field(key: str, value: object) -> str | None:
    if isinstance(value, bool):
        return f"{escape_key(key)}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{escape_key(key)}={value}i"
    if isinstance(value, float):
        return f"{escape_key(key)}={value!r}" if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        return f"{escape_key(key)}={quote_string(value)}"
    return None


def tags(meta: MachineMeta | None, machine: str, site: str, extra: Mapping[str, str]) -> str:
    items = {"machine": machine, "site": site, **({"lab": meta.lab} if meta and meta.lab else {}),
             **({"kind": meta.kind} if meta else {}), **extra}
    return ",".join(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(items.items()) if v)


def event_line(e: Event, meta: MachineMeta | None, site: str) -> str:
    extra = {"type": e.type}
    if e.type == "alert":
        extra["rule"] = str(e.data.get("rule", ""))
    fields = [f"title={quote_string(e.title())}", f"text={quote_string(json.dumps(e.data, ensure_ascii=False))}"]
    if e.id is not None:
        fields.append(f"event_id={e.id}i")
    for k, v in e.data.items():
        if k in ("title", "text", "event_id"):
            continue
        f = _field(k, v)
        if f is not None:
            fields.append(f)
    return f"events,{tags(meta, e.machine, site, extra)} {','.join(fields)} {e.ts_ns}"


OEE_FIELDS = ("availability", "performance", "quality", "oee", "planned_s", "running_s", "parts")


def oee_line(machine: str, meta: MachineMeta | None, site: str, shift: str, start_ns: int,
             result: Mapping[str, object]) -> str | None:
    """One closed shift of one machine as a point of the `oee` measurement (at the shift's start), or None
    when nothing was planned (no factor to write)."""
    fields = [f for k in OEE_FIELDS if (f := _field(k, result.get(k))) is not None]
    if not any(f.startswith("oee=") for f in fields):
        return None
    return f"oee,{tags(meta, machine, site, {'shift': shift})} {','.join(fields)} {start_ns}"


class InfluxWriter:
    """Posts line protocol (ns precision) to the site's InfluxDB, 1.x or 2.x/3.x (events, OEE, maintenance, and
    the usage ledger: gateway/billing/export.py)."""

    def __init__(self, cfg: InfluxV1 | InfluxV2, client: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.client = client
        self.target = write_target(cfg, "ns")  # event, OEE, usage and maintenance lines carry ns timestamps

    async def write(self, lines: Sequence[str]) -> bool:
        """True when stored (or rejected for good: those lines are logged and dropped), False to retry."""
        if not lines:
            return True
        try:
            t = self.target
            r = await self.client.post(t.url, params=t.params, headers=t.headers,
                                       content="\n".join(lines).encode(), timeout=self.cfg.timeout_s,
                                       auth=t.auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as err:
            log.debug("events to influxdb: %s", err)
            return False
        if r.status_code in (200, 204):
            return True
        if r.status_code in (400, 422):
            log.error("influxdb rejected event lines (%s): %.300s", r.status_code, r.text)
            return True
        return False


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


MAINTENANCE_UNITS = {"running_h": "h", "cycles": "cycles", "material_m": "m", "days": "d"}


def maintenance_line(task: Mapping[str, Any], meta: MachineMeta | None, site: str, ts_ns: int) -> str | None:
    """A maintenance task's status (the limit nearest to due) as a point of the `maintenance` measurement."""
    limits: Mapping[str, Mapping[str, Any]] = task.get("limits") or {}
    if not limits:
        return None
    metric, nearest = max(limits.items(), key=lambda kv: float(kv[1]["pct"]))
    fields = [f for f in (_field("used", _num(nearest["used"])), _field("limit", _num(nearest["limit"])),
                          _field("unit", MAINTENANCE_UNITS.get(metric, metric)),
                          _field("due_pct", _num(task.get("pct"))), _field("status", str(task.get("status"))))
              if f is not None]
    return f"maintenance,{tags(meta, str(task['machine']), site, {'task': str(task['task'])})} " \
           f"{','.join(fields)} {ts_ns}"


class EventExporter:
    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 timezone: str = "Asia/Almaty") -> None:
        self.store = store
        self.writer = writer
        self.machines = machines
        self.site = site
        self.tz = ZoneInfo(timezone)
        self.failing = False

    async def export_once(self) -> int:
        rows = self.store.query("SELECT * FROM events WHERE exported = 0 ORDER BY id LIMIT ?", (BATCH,))
        if not rows:
            return 0
        events = [Event(r["ts_ns"], r["machine"], r["type"], json.loads(r["data"]), r["id"]) for r in rows]
        lines = [event_line(e, self.machines.get(e.machine), self.site) for e in events]
        if not await self.writer.write(lines):
            if not self.failing:
                log.warning("events cannot be written to influxdb yet; they are kept and retried")
            self.failing = True
            return -1
        self.failing = False
        ids = [r["id"] for r in rows]
        self.store.execute(f"UPDATE events SET exported = 1 WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608
                           ids)
        return len(rows)

    async def run(self) -> None:
        while True:
            n = await self.export_once()
            if n == BATCH:
                continue
            await asyncio.sleep(IDLE_S if n >= 0 else 10.0)


# (machine, start_ns, end_ns) -> the OEE report of that range (see gateway.oee.oee_report)
OeeReport = Callable[[str, int, int], Mapping[str, Any]]


class OeeExporter:
    """Writes every closed shift's OEE per machine to the `oee` measurement, once, surviving restarts.

    The end of the last exported shift is kept in the business store; an InfluxDB outage delays the export and
    a replay overwrites the same points (same tags, the shift's start as timestamp)."""

    KEY = "oee_exported_until_ns"

    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 report: OeeReport, clock: Callable[[], int], *, first_ns: int) -> None:
        self.store = store
        self.writer = writer
        self.machines = machines
        self.site = site
        self.report = report
        self.clock = clock
        saved = store.get_json(self.KEY)
        self.until_ns = int(saved) if saved is not None else first_ns

    async def export_once(self) -> int:
        """Export the shifts that ended since the last export; returns points written (-1: retry later)."""
        now = self.clock()
        lines: list[str] = []
        done_until = self.until_ns
        for mid, meta in self.machines.items():
            for shift in self.report(mid, self.until_ns, now).get("shifts", []):
                start, end = _iso_ns(shift["start"]), _iso_ns(shift["end"])
                if start < self.until_ns or end >= now:
                    continue  # not closed yet (a running shift is clipped to now), or already exported
                done_until = max(done_until, end)
                line = oee_line(mid, meta, self.site, str(shift["shift"]), start, shift)
                if line is not None:
                    lines.append(line)
        if done_until == self.until_ns:
            return 0
        if not await self.writer.write(lines):
            return -1
        self.until_ns = done_until
        self.store.put_json(self.KEY, done_until)
        return len(lines)

    async def run(self, interval_s: float = 60.0) -> None:
        while True:
            await self.export_once()
            await asyncio.sleep(interval_s)


class MaintenanceExporter:
    """Writes every maintenance task's status to the `maintenance` measurement once a minute (best effort: a
    failed write is simply superseded by the next one)."""

    def __init__(self, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 tasks: Callable[[int], Sequence[Mapping[str, Any]]], clock: Callable[[], int]) -> None:
        self.writer = writer
        self.machines = machines
        self.site = site
        self.tasks = tasks
        self.clock = clock

    async def export_once(self) -> int:
        now = self.clock()
        lines = [line for t in self.tasks(now)
                 if (line := maintenance_line(t, self.machines.get(str(t["machine"])), self.site, now)) is not None]
        return len(lines) if await self.writer.write(lines) else -1

    async def run(self, interval_s: float = 60.0) -> None:
        while True:
            await self.export_once()
            await asyncio.sleep(interval_s)


def _iso_ns(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
