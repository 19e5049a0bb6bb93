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

import httpx

from gateway.config.models import InfluxV1, InfluxV2
from gateway.machines import MachineMeta
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
    """Posts line protocol (ns precision) to the site's InfluxDB, 1.x or 2.x/3.x."""

    def __init__(self, cfg: InfluxV1 | InfluxV2, client: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.client = client
        self.headers: dict[str, str] = {}
        self.auth: httpx.BasicAuth | None = None
        if isinstance(cfg, InfluxV1):
            self.url = f"{cfg.url}/write"
            self.params = {"db": cfg.database, "precision": "n"}
            if cfg.retention_policy:
                self.params["rp"] = cfg.retention_policy
            if cfg.username:
                self.auth = httpx.BasicAuth(cfg.username, cfg.password or "")
        else:
            self.url = f"{cfg.url}/api/v2/write"
            self.params = {"org": cfg.org, "bucket": cfg.bucket, "precision": "ns"}
            self.headers["Authorization"] = f"Token {cfg.token}"

    async def write(self, lines: Sequence[str]) -> bool:
        """True when stored (or rejected for good: those lines are logged and dropped), False to retry."""
        if not lines:
            return True
        try:
            r = await self.client.post(self.url, params=self.params, headers=self.headers,
                                       content="\n".join(lines).encode(), timeout=self.cfg.timeout_s,
                                       auth=self.auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as err:
            log.debug("events to influxdb: %s", err)
            return False
        if r.status_code in (200, 204):
            return True
        if r.status_code in (400, 422):
            log.error("influxdb rejected event lines (%s): %.300s", r.status_code, r.text)
            return True
        return False


class EventExporter:
    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str) -> None:
        self.store = store
        self.writer = writer
        self.machines = machines
        self.site = site
        self.failing = False

    async def export_once(self) -> int:
        rows = self.store.query("SELECT * FROM events WHERE exported = 0 ORDER BY id LIMIT ?", (BATCH,))
        if not rows:
            return 0
        lines = [event_line(Event(r["ts_ns"], r["machine"], r["type"], json.loads(r["data"]), r["id"]),
                            self.machines.get(r["machine"]), self.site) for r in rows]
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
                if start < self.until_ns or end > now:
                    continue  # not closed yet (or already exported)
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


def _iso_ns(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
