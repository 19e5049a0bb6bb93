"""Events, OEE and maintenance status to InfluxDB (the `events`, `oee` and `maintenance` measurements), through
the one InfluxDB writer and the sanitising line-protocol functions (gateway/sinks/).

Events are taken from the business store in id order and marked exported once InfluxDB accepted them, so an
InfluxDB outage delays them but loses none; a replay writes the same points again (same tags and timestamp),
which InfluxDB overwrites instead of duplicating.

    events,lab=printfarm,machine=x1c-01,site=kartech,type=state title="x1c-01: idle → running",text="...",
        from="idle",to="running",duration_s=12.5,event_id=17i 1794985200000000000
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway import schema
from gateway.machines import MachineMeta
from gateway.sinks.export import CursorExporter, Exporter
from gateway.sinks.lineproto import field_value, text_line
from gateway.sinks.writer import InfluxWriter
from gateway.state.events import Event
from gateway.store import Row, Store

__all__ = ["EventExporter", "InfluxWriter", "MaintenanceExporter", "OeeExporter", "event_line", "machine_tags",
           "maintenance_line", "oee_line"]


def machine_tags(meta: MachineMeta | None, machine: str, site: str, **extra: str) -> dict[str, str | None]:
    """The tags of a point about one machine: site, lab, kind, machine, and `extra`."""
    return {schema.MACHINE: machine, schema.SITE: site, schema.LAB: meta.lab if meta else None,
            schema.KIND: meta.kind if meta else None, **extra}


def event_line(e: Event, meta: MachineMeta | None, site: str) -> str:
    extra = {schema.EVENT_TYPE: e.type}
    if e.type == schema.EVENT_ALERT:
        extra[schema.RULE] = str(e.data.get(schema.RULE, ""))
    fields: dict[str, object] = {schema.TITLE: e.title(), "text": json.dumps(e.data, ensure_ascii=False),
                                 "event_id": e.id}
    fields.update((k, v) for k, v in e.data.items() if k not in fields)
    line = text_line(schema.EVENTS, machine_tags(meta, e.machine, site, **extra), fields, e.ts_ns)
    assert line is not None  # the title is always a field
    return line


OEE_FIELDS = (schema.AVAILABILITY, schema.PERFORMANCE, schema.QUALITY, schema.OEE_FIELD, schema.PLANNED_S,
              schema.RUNNING_S, schema.PARTS)


def oee_line(machine: str, meta: MachineMeta | None, site: str, shift: str, start_ns: int,
             result: Mapping[str, object]) -> str | None:
    """One closed shift of one machine as a point of the `oee` measurement (at the shift's start), or None
    when nothing was planned (no factor to write)."""
    fields = {k: v for k in OEE_FIELDS if field_value(v := result.get(k)) is not None}
    if schema.OEE_FIELD not in fields:
        return None
    return text_line(schema.OEE, machine_tags(meta, machine, site, **{schema.SHIFT: shift}), fields, start_ns)


class EventExporter(CursorExporter[Row]):
    """The business store's events, in id order, to the `events` measurement (cursor: the `exported` flag)."""

    what = "events"

    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 timezone: str = "Asia/Almaty") -> None:
        super().__init__(writer)
        self.store = store
        self.machines = machines
        self.site = site

    def pending(self, limit: int) -> list[Row]:
        return self.store.query("SELECT * FROM events WHERE exported = 0 ORDER BY id LIMIT ?", (limit,))

    def line(self, row: Row) -> str:
        e = Event(row["ts_ns"], row["machine"], row["type"], json.loads(row["data"]), row["id"])
        return event_line(e, self.machines.get(e.machine), self.site)

    def advance(self, rows: Sequence[Row]) -> None:
        ids = [r["id"] for r in rows]
        self.store.execute(f"UPDATE events SET exported = 1 WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608
                           ids)


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


MAINTENANCE_UNITS = {"running_h": "h", "cycles": "cycles", "material_m": "m", "days": "d"}


def maintenance_line(task: Mapping[str, Any], meta: MachineMeta | None, site: str, ts_ns: int) -> str | None:
    """A maintenance task's status (the limit nearest to due) as a point of the `maintenance` measurement."""
    limits: Mapping[str, Mapping[str, Any]] = task.get("limits") or {}
    if not limits:
        return None
    metric, nearest = max(limits.items(), key=lambda kv: float(kv[1]["pct"]))
    fields = {schema.USED: _num(nearest["used"]), schema.LIMIT: _num(nearest["limit"]),
              schema.UNIT: MAINTENANCE_UNITS.get(metric, metric), schema.DUE_PCT: _num(task.get("pct")),
              schema.STATUS: str(task.get("status"))}
    return text_line(schema.MAINTENANCE, machine_tags(meta, str(task["machine"]), site, task=str(task["task"])),
                     fields, ts_ns)


# (machine, start_ns, end_ns) -> the OEE report of that range (see gateway.oee.oee_report)
OeeReport = Callable[[str, int, int], Mapping[str, Any]]


class OeeExporter(Exporter):
    """Writes every closed shift's OEE per machine to the `oee` measurement, once, surviving restarts.

    The end of the last exported shift is kept in the business store; an InfluxDB outage delays the export and
    a replay overwrites the same points (same tags, the shift's start as timestamp)."""

    KEY = "oee_exported_until_ns"
    what = "OEE points"

    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 report: OeeReport, clock: Callable[[], int], *, first_ns: int) -> None:
        super().__init__(writer)
        self.store = store
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
        if not await self.write(lines):
            return -1
        self.until_ns = done_until
        self.store.put_json(self.KEY, done_until)
        return len(lines)

    async def run(self, interval_s: float = 60.0) -> None:
        while True:
            await self.export_once()
            await asyncio.sleep(interval_s)


class MaintenanceExporter(Exporter):
    """Writes every maintenance task's status to the `maintenance` measurement once a minute (best effort: a
    failed write is simply superseded by the next one)."""

    what = "maintenance status points"

    def __init__(self, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 tasks: Callable[[int], Sequence[Mapping[str, Any]]], clock: Callable[[], int]) -> None:
        super().__init__(writer)
        self.machines = machines
        self.site = site
        self.tasks = tasks
        self.clock = clock

    async def export_once(self) -> int:
        now = self.clock()
        lines = [line for t in self.tasks(now)
                 if (line := maintenance_line(t, self.machines.get(str(t["machine"])), self.site, now)) is not None]
        return len(lines) if await self.write(lines) else -1

    async def run(self, interval_s: float = 60.0) -> None:
        while True:
            await self.export_once()
            await asyncio.sleep(interval_s)


def _iso_ns(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
