"""The usage ledger to InfluxDB: the `usage` measurement, one point per ledger entry, with the partner and
project it is billed to — what the usage dashboards query (dashboards/usage.py).

Entries are taken from the business store in the order they were appended (their row id) and the last one
InfluxDB accepted is remembered in the store, so an outage delays them but loses none, and a restart neither
re-exports nor forgets. A replay writes the same points (same tags and timestamp), which InfluxDB overwrites.

    usage,kind=printer,lab=printfarm,machine=fdm-01,month=2026-11,partner=acme,project=ore,site=kartech,
        source=events running_s=5400,material_used=12.5,material_unit="m",jobs=1i,sign=1i,job="ACME_gear.gcode",
        entry="fdm-01/1795687200000000000/0" 1795692600000000000

- The timestamp is when the entry was recorded (a session's end; an assignment's or correction's time).
- `running_s`, `material_used` (metres) and `jobs` carry the entry's sign: a reversal (an assignment moving usage
  from `partner=unattributed` to a partner, a correction) subtracts, so sums per partner are what is billed.
- `jobs` is 1 for the first session of a job (0 for its later sessions), so `sum(jobs)` counts jobs.
- `month` is the month (site time zone) the usage started in; `partner` is `unattributed` until assigned.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from gateway.billing.ledger import LedgerEntry
from gateway.billing.periods import NS, month_of
from gateway.billing.persist import LedgerStore
from gateway.machines import MachineMeta
from gateway.state.influx import InfluxWriter, quote_string, tags
from gateway.store import Store

log = logging.getLogger(__name__)

BATCH = 500
IDLE_S = 5.0
UNATTRIBUTED = "unattributed"
CURSOR_KEY = "usage_exported_rowid"


def usage_line(e: LedgerEntry, meta: MachineMeta | None, site: str, tz: ZoneInfo) -> str:
    extra = {"month": month_of(e.start_ns, tz), "partner": e.partner or UNATTRIBUTED, "project": e.project or "",
             "source": e.source}
    running = e.sign * e.running_ns / NS
    material = float(e.material_m) * e.sign
    fields = [f"running_s={running!r}", f"material_used={material!r}", 'material_unit="m"',
              f"jobs={e.sign if e.segment == 0 else 0}i", f"sign={e.sign}i", f"job={quote_string(e.job)}",
              f"entry={quote_string(e.key)}"]
    return f"usage,{tags(meta, e.machine, site, extra)} {','.join(fields)} {e.recorded_ns}"


class UsageExporter:
    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 timezone: str) -> None:
        self.store = store
        LedgerStore(store)  # the ledger's tables, should the exporter start first
        self.writer = writer
        self.machines = machines
        self.site = site
        self.tz = ZoneInfo(timezone)
        saved = store.get_json(CURSOR_KEY)
        self.after = int(saved) if saved is not None else 0
        self.failing = False

    async def export_once(self) -> int:
        """Write the entries appended since the last export; how many (-1: InfluxDB did not take them, retry)."""
        rows = self.store.query("SELECT rowid AS id, entry FROM ledger WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                (self.after, BATCH))
        if not rows:
            return 0
        entries = [LedgerEntry.from_dict(json.loads(r["entry"])) for r in rows]
        lines = [usage_line(e, self.machines.get(e.machine), self.site, self.tz) for e in entries]
        if not await self.writer.write(lines):
            if not self.failing:
                log.warning("usage cannot be written to influxdb yet; it is kept and retried")
            self.failing = True
            return -1
        self.failing = False
        self.after = int(rows[-1]["id"])
        self.store.put_json(CURSOR_KEY, self.after)
        return len(rows)

    async def run(self) -> None:
        while True:
            n = await self.export_once()
            if n == BATCH:
                continue
            await asyncio.sleep(IDLE_S if n >= 0 else 10.0)
