"""Closed shifts' OEE lands in the real InfluxDB once, survives a restart, and waits for open shifts; the usage
ledger and maintenance status land as the dashboards query them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from gateway.billing.export import UsageExporter
from gateway.billing.ledger import LedgerEntry, assign
from gateway.billing.persist import LedgerStore
from gateway.config.models import InfluxV1
from gateway.machines import MachineMeta
from gateway.state.influx import InfluxWriter, MaintenanceExporter, OeeExporter
from gateway.state.model import iso
from gateway.store import Store
from simulators.services import InfluxDB1

S = 1_000_000_000
H = 3600 * S
T0 = 1_795_651_200_000_000_000  # 2026-11-26T00:00:00Z


def shift(name: str, start: int, end: int, oee: float | None) -> dict[str, Any]:
    return {"shift": name, "start": iso(start), "end": iso(end), "availability": oee, "performance": None,
            "quality": None, "oee": oee, "planned_s": (end - start) / 1e9 if oee is not None else 0.0,
            "running_s": 3600.0, "parts": 0}


def report(machine: str, start_ns: int, end_ns: int) -> Mapping[str, Any]:
    """Like the real report (`oee_report` over `shift_windows`): every shift overlapping the range, clipped to it —
    so a shift still running ends at `end_ns`, which is now."""
    spans = [("A", T0, T0 + 8 * H, 0.5), ("B", T0 + 8 * H, T0 + 16 * H, None), ("C", T0 + 16 * H, T0 + 24 * H, 0.75)]
    return {"shifts": [shift(name, max(s, start_ns), min(e, end_ns), oee) for name, s, e, oee in spans
                       if min(e, end_ns) > max(s, start_ns)]}


async def test_closed_shifts_are_exported_once(influxdb: InfluxDB1, tmp_path: Path) -> None:
    db = f"t_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(db)
    metas = {"cnc-01": MachineMeta("cnc-01", "CNC", "cnc", "opcua", "kartech", "shop")}
    cfg = InfluxV1(version=1, url=influxdb.url, database=db)
    now = [T0 + 20 * H]  # shifts A and B are over, C is still running
    async with httpx.AsyncClient() as client:
        store = Store(tmp_path / "b.sqlite")
        exp = OeeExporter(store, InfluxWriter(cfg, client), metas, "kartech", report, lambda: now[0], first_ns=T0)
        assert await exp.export_once() == 1  # A; B had nothing planned
        assert await exp.export_once() == 0
        store.close()
        store = Store(tmp_path / "b.sqlite")  # a restart neither re-exports nor forgets
        exp = OeeExporter(store, InfluxWriter(cfg, client), metas, "kartech", report, lambda: now[0], first_ns=T0)
        assert await exp.export_once() == 0
        now[0] = T0 + 25 * H
        assert await exp.export_once() == 1  # C closed
        store.close()
    series = influxdb.query('SELECT oee, availability, planned_s FROM "oee" GROUP BY *', db=db)
    rows = {s["tags"]["shift"]: s["values"] for s in series}
    assert rows == {"A": [[T0, 0.5, 0.5, 28800]], "C": [[T0 + 16 * H, 0.75, 0.75, 28800]]}
    assert series[0]["tags"] == {"kind": "cnc", "lab": "shop", "machine": "cnc-01", "shift": "A", "site": "kartech"}


async def test_usage_ledger_and_maintenance_status_land_for_the_dashboards(influxdb: InfluxDB1,
                                                                             tmp_path: Path) -> None:
    db = f"t_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(db)
    metas = {"fdm-01": MachineMeta("fdm-01", "Prusa", "printer", "serial", "kartech", "printfarm")}
    cfg = InfluxV1(version=1, url=influxdb.url, database=db)
    end = T0 + 20 * H  # 2026-11-26T20:00Z, still November in Asia/Almaty (UTC+5)
    start = end - 5400 * S
    store = Store(tmp_path / "b.sqlite")
    ledger = LedgerStore(store)
    job = LedgerEntry(key=f"fdm-01/{start}/0", machine="fdm-01", job="ACME_gear.gcode", job_start_ns=start,
                      segment=0, start_ns=start, end_ns=end, recorded_ns=end, source="events",
                      running=((start, end),), material_m=Decimal("12.5"), partner="acme", project="ore")
    loose = replace(job, key=f"fdm-01/{end}/0", job="gear.gcode", job_start_ns=end, start_ns=end, end_ns=end + H,
                    recorded_ns=end + H, running=((end, end + H),), material_m=Decimal(0), partner=None, project=None)
    ledger.add([job, loose])
    task = {"machine": "fdm-01", "task": "nozzle", "status": "due_soon", "pct": 92.0,
            "limits": {"running_h": {"used": 184.0, "limit": 200.0, "pct": 92.0},
                       "material_m": {"used": 1000.0, "limit": 5000.0, "pct": 20.0}}}
    async with httpx.AsyncClient() as client:
        writer = InfluxWriter(cfg, client)
        assert await UsageExporter(store, writer, metas, "kartech", "Asia/Almaty").export_once() == 2
        assert await UsageExporter(store, writer, metas, "kartech", "Asia/Almaty").export_once() == 0  # a restart
        # an admin assigns the unattributed job: the pair follows
        ledger.add(assign(loose, partner="acme", project=None, recorded_ns=end + 2 * H, by="admin"))
        assert await UsageExporter(store, writer, metas, "kartech", "Asia/Almaty").export_once() == 2
        assert await MaintenanceExporter(writer, metas, "kartech", lambda _now: [task], lambda: T0).export_once() == 1
    store.close()
    series = influxdb.query('SELECT running_s, material_used, material_unit, jobs, job FROM "usage" GROUP BY *',
                            db=db)
    by_tags = {(x["tags"]["partner"], x["tags"].get("project") or None, x["tags"]["source"]): x["values"]
               for x in series}
    assert next(x["tags"] for x in series if x["tags"].get("project") == "ore") == {
        "kind": "printer", "lab": "printfarm", "machine": "fdm-01", "month": "2026-11", "partner": "acme",
        "project": "ore", "site": "kartech", "source": "events"}
    assert by_tags == {
        ("acme", "ore", "events"): [[end, 5400, 12.5, "m", 1, "ACME_gear.gcode"]],
        ("unattributed", None, "events"): [[end + H, 3600, 0, "m", 1, "gear.gcode"]],
        ("unattributed", None, "assignment"): [[end + 2 * H, -3600, 0, "m", -1, "gear.gcode"]],
        ("acme", None, "assignment"): [[end + 2 * H, 3600, 0, "m", 1, "gear.gcode"]],
    }
    [per_partner] = influxdb.query('SELECT sum(running_s) FROM "usage" WHERE partner = \'acme\'', db=db)
    assert per_partner["values"][0][1] == 9000
    [maint] = influxdb.query('SELECT used, "limit", unit, due_pct, status FROM "maintenance" GROUP BY *', db=db)
    assert maint["tags"]["task"] == "nozzle"
    assert maint["values"] == [[T0, 184, 200, "h", 92, "due_soon"]]
