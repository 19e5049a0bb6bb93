"""The usage ledger to InfluxDB: the `usage` measurement, one point per ledger entry, with the partner and
project it is billed to — what the usage dashboards query (dashboards/usage.py).

Entries are taken from the business store in the order they were appended (their row id) and the last one
InfluxDB accepted is remembered in the store, so an outage delays them but loses none, and a restart neither
re-exports nor forgets. A replay writes the same points (same tags and timestamp), which InfluxDB overwrites.

    usage,kind=printer,lab=printfarm,machine=fdm-01,month=2026-11,partner=acme,project=ore,site=kartech,
        source=events running_s=5400,reserved_s=0,material_used=12.5,material_unit="m",energy_kwh=0,jobs=1i,sign=1i,
        job="ACME_gear.gcode",
        entry="fdm-01/1795687200000000000/0" 1795692600000000000

- The timestamp is when the entry was recorded (a session's end; an assignment's or correction's time).
- `running_s`, `reserved_s` (check-ins), `material_used` (metres), `energy_kwh` and `jobs` carry the entry's
  sign: a reversal (an assignment moving usage from `partner=unattributed` to a partner, a correction) subtracts,
  so sums per partner are what is billed.
- `jobs` is 1 for the first session of a job (0 for its later sessions and for check-ins), so `sum(jobs)` counts
  jobs.
- `month` is the month (site time zone) the usage started in; `partner` is `unattributed` until assigned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

from gateway import schema
from gateway.billing.ledger import LedgerEntry
from gateway.billing.periods import NS, month_of
from gateway.billing.persist import LedgerStore
from gateway.machines import MachineMeta
from gateway.sinks.export import CursorExporter
from gateway.sinks.lineproto import text_line
from gateway.sinks.writer import InfluxWriter
from gateway.state.influx import machine_tags
from gateway.store import Row, Store

UNATTRIBUTED = "unattributed"
CURSOR_KEY = "usage_exported_rowid"


def usage_line(e: LedgerEntry, meta: MachineMeta | None, site: str, tz: ZoneInfo) -> str:
    tags = machine_tags(meta, e.machine, site, **{schema.MONTH: month_of(e.start_ns, tz),
                                                  schema.PARTNER: e.partner or UNATTRIBUTED,
                                                  schema.PROJECT: e.project or "", "source": e.source})
    fields = {schema.USAGE_RUNNING_S: e.sign * e.running_ns / NS, schema.USAGE_RESERVED_S: e.sign * e.reserved_ns / NS,
              schema.MATERIAL_USED: float(e.material_m) * e.sign, schema.MATERIAL_UNIT: "m",
              schema.ENERGY_KWH: float(e.energy_kwh) * e.sign,
              schema.USAGE_JOBS: e.sign if e.segment == 0 and e.source != "checkin" else 0, "sign": e.sign,
              schema.JOB: e.job, "entry": e.key}
    line = text_line(schema.USAGE, tags, fields, e.recorded_ns)
    assert line is not None  # every field is set
    return line


class UsageExporter(CursorExporter[Row]):
    """The usage ledger, in the order it was appended, to the `usage` measurement (cursor: the last row id
    InfluxDB stored, kept in the store)."""

    what = "usage"
    idle_s = 5.0

    def __init__(self, store: Store, writer: InfluxWriter, machines: Mapping[str, MachineMeta], site: str,
                 timezone: str) -> None:
        super().__init__(writer)
        self.store = store
        LedgerStore(store)  # the ledger's tables, should the exporter start first
        self.machines = machines
        self.site = site
        self.tz = ZoneInfo(timezone)
        saved = store.get_json(CURSOR_KEY)
        self.after = int(saved) if saved is not None else 0

    def pending(self, limit: int) -> list[Row]:
        return self.store.query("SELECT rowid AS id, entry FROM ledger WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                (self.after, limit))

    def line(self, row: Row) -> str:
        e = LedgerEntry.from_dict(json.loads(row["entry"]))
        return usage_line(e, self.machines.get(e.machine), self.site, self.tz)

    def advance(self, rows: Sequence[Row]) -> None:
        self.after = int(rows[-1]["id"])
        self.store.put_json(CURSOR_KEY, self.after)
