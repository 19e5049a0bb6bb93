"""Every panel, annotation and variable query of every dashboard, with Grafana's substitution applied, runs
against real InfluxDB 1.6 after simulated machines have written hours of telemetry and must return rows — and
every column a panel selects must be filled by at least one row, so a panel whose field no writer produces fails.

Every point comes from the gateway's own writers: telemetry from simulators/dynamics.py models through the real
InfluxSink; the gateway's own metrics from a real Metrics object through the real SelfMetricsWriter; events and
usage through the EventExporter (`event_line`) and the UsageExporter (`usage_line`, from usage ledger entries
built from the events with attribution rules) from a real business store; OEE through the
OeeExporter over the real shift calendar and `oee_report`; maintenance status through the MaintenanceExporter over
the real Maintenance service. Only the events themselves (state changes, jobs, alerts) are derived here from the
simulated machines' signals, as the state engine and alert book would.

The lab is written for several injected "now"s — the wall clock, a shift and day change in the site's time zone,
and a year end — so that no result depends on the hour or date the test runs at.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards import build
from dashboards.interpolate import ALL, Context, TimeRange, Variable, apply_variable_regex
from dashboards.validate import query_variables, targets
from gateway import schema
from gateway.billing.attribution import Attributor
from gateway.billing.export import UsageExporter
from gateway.billing.ledger import entries_from_events
from gateway.billing.persist import LedgerStore
from gateway.config.billing import AttributionRule
from gateway.config.models import InfluxV1
from gateway.config.operations import MaintenancePlan, MaintenanceSection, Shift, ShiftsSection, Usage
from gateway.machines import MachineMeta
from gateway.maintenance.service import Maintenance
from gateway.metrics import Metrics
from gateway.oee import oee_report, shift_windows
from gateway.reading import Quality, Reading
from gateway.runtime import describe_metrics
from gateway.self_metrics import SelfMetricsWriter
from gateway.sinks.influx import InfluxSink
from gateway.state.events import Event
from gateway.state.influx import EventExporter, InfluxWriter, MaintenanceExporter, OeeExporter
from gateway.store import Store
from simulators.dynamics import Chamber, EnvSensor, Furnace, Model, PowerMeter, Printer
from simulators.services import InfluxDB1

pytestmark = pytest.mark.integration

SITE, OTHER_SITE = "karaganda-hub", "almaty-demo"
TIMEZONE = "Asia/Almaty"
STEP_S = 30
HOURS = 5
S = 1_000_000_000
MACHINES = [
    MachineMeta("x1c-01", "Printer 1", "printer", "mqtt", SITE, "printfarm"),
    MachineMeta("x1c-02", "Printer 2", "printer", "mqtt", SITE, "printfarm"),
    MachineMeta("furnace-01", "Furnace", "furnace", "mqtt", SITE, "materials"),
    MachineMeta("chamber-01", "Chamber", "chamber", "mqtt", SITE, "materials"),
    MachineMeta("env-01", "Lab air", "env_sensor", "mqtt", SITE, "printfarm"),
    MachineMeta("pm-01", "Power meter", "power_meter", "mqtt", SITE),  # no lab: "All" labs must still match it
    MachineMeta("mk4-07", "Other site's printer", "printer", "mqtt", OTHER_SITE, "demo"),
]
UNREPLACED = re.compile(r"\$\w|\$\{|\[\[")
STATEFUL = ("x1c-01", "x1c-02", "furnace-01", "chamber-01", "mk4-07")
#: Two-hour shifts around the clock: whatever the hour, the five hours of data hold at least one closed shift.
SHIFTS = ShiftsSection(calendar=[Shift(id=f"h{h:02d}", start=f"{h:02d}:00", end=f"{h + 2:02d}:00")
                                 for h in range(0, 24, 2)])
#: Due after 6 running hours, 4.5 of them used before the gateway started counting: ok, then due soon, then due.
MAINTENANCE = MaintenanceSection(plans=[MaintenancePlan(
    id="service", name="Service", kinds=["printer", "furnace", "chamber"], every=Usage(running_h=6.0),
    already_used=Usage(running_h=4.5))])
#: Who the simulated jobs are billed to (print files of simulators/dynamics.py); other jobs stay unattributed.
ATTRIBUTION = [AttributionRule(regex="^mine_", partner="qarmet-rnd", project="sensors"),
               AttributionRule(regex="^(drone|gripper)_", partner="dronelab"),
               AttributionRule(regex="^(bracket|gear|conveyor)_", partner="materials-lab", project="fixtures")]


def utc_ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()) * S


#: The instants the lab is written up to ("now"); None is the wall clock.
NOWS: dict[str, int | None] = {
    "wall-clock": None,
    # 00:30 UTC = 05:30 in Almaty: data from the previous evening, a day change in UTC inside the range
    "0030Z": utc_ns("2026-03-10T00:30:00"),
    # 23:59 UTC on Dec 31 = 04:59 on Jan 1 in Almaty: a month and year change in the site's time zone
    "year-end": utc_ns("2026-12-31T23:59:00"),
}


def model_for(meta: MachineMeta, seed: int) -> Model:
    if meta.kind == "printer":
        return Printer(seed=seed, job_minutes=(25.0, 70.0), gap_minutes=(3.0, 10.0), start_progress_pct=40.0)
    if meta.kind == "furnace":
        return Furnace(seed=seed, start_offset_s=3000.0)
    if meta.kind == "chamber":
        return Chamber(seed=seed, start_offset_s=1200.0)
    if meta.kind == "env_sensor":
        return EnvSensor(seed=seed)
    return PowerMeter(seed=seed)


@dataclass
class Tracker:
    """Derives state-change and job events from one machine's simulated signals, as the state engine does."""

    meta: MachineMeta
    state: str | None = None
    initial: str = "offline"
    since_ns: int = 0
    job: str | None = None
    job_since_ns: int = 0
    material_mm: float = 0.0
    events: list[Event] = field(default_factory=list)
    running_s: float = 0.0

    def step(self, ts: int, values: dict[str, Any]) -> None:
        mid = self.meta.id
        state = str(values.get("state", "idle"))
        job = str(values.get("job_file") or values.get("programme") or values.get("step") or "")
        if self.state is None:
            self.state, self.initial, self.since_ns = state, state, ts
        elif state != self.state:
            duration = (ts - self.since_ns) / S
            if self.state == "running":
                self.running_s += duration
            self.events.append(Event(ts, mid, "state", {"from": self.state, "to": state, "duration_s": duration,
                                                        "basis": "state signal"}))
            self.state, self.since_ns = state, ts
        running_job = job if state in ("running", "paused") and job not in ("", "none") else None
        if running_job != self.job:
            if self.job is not None:
                self.events.append(Event(ts, mid, "job_end", {
                    "job": self.job, "job_id": None, "result": "failed" if state == "error" else "done",
                    "duration_s": (ts - self.job_since_ns) / S, "material_m": round(self.material_mm / 1000, 4)}))
            if running_job is not None:
                self.events.append(Event(ts, mid, "job_start", {"job": running_job, "job_id": None}))
            self.job, self.job_since_ns = running_job, ts
        if isinstance(values.get("filament_used_mm"), float):
            self.material_mm = float(values["filament_used_mm"])

    def counters(self, now_ns: int) -> dict[str, float]:
        """The usage counters the state engine keeps (running time so far)."""
        running = self.running_s + ((now_ns - self.since_ns) / S if self.state == "running" else 0.0)
        return {"running_s": running}

    def oee(self, start_ns: int, end_ns: int) -> Mapping[str, Any]:
        """What Operations.oee reports: the real shift calendar and OEE maths over this machine's state changes."""
        changes = [(e.ts_ns, str(e.data["to"])) for e in self.events if e.type == "state"]
        return oee_report(shift_windows(SHIFTS, TIMEZONE, start_ns, end_ns), self.initial, changes, [], None)


def alert_events(mid: str, start_ns: int, end_ns: int, rnd: random.Random, alert_id: int) -> list[Event]:
    """One closed alert per machine; the furnace and a printer keep one open (the alert book's event data)."""
    def alert(ts: int, rule: str, severity: str, transition: str, state: str, message: str, aid: int) -> Event:
        return Event(ts, mid, "alert", {"alert_id": aid, "rule": rule, "severity": severity, "transition": transition,
                                        "state": state, "count": 1, "message": message})

    t0 = start_ns + rnd.randrange(HOURS * 3600 // 3) * S
    out = [alert(t0 + i * 600 * S, "overtemp", "warning", tr, st, f"{mid} above limit", alert_id)
           for i, (tr, st) in enumerate((("raised", "active_unacknowledged"), ("acknowledged", "acknowledged"),
                                         ("cleared", "closed")))]
    if mid == "furnace-01":
        out.append(alert(end_ns - 900 * S, "door_open_hot", "critical", "raised", "active_unacknowledged",
                         "door open above 200 degC", alert_id + 1000))
    if mid == "x1c-02":
        out.append(alert(end_ns - 1200 * S, "filament_runout", "warning", "raised", "active_unacknowledged",
                         "filament ran out", alert_id + 2000))
        out.append(alert(end_ns - 900 * S, "filament_runout", "warning", "acknowledged", "acknowledged",
                         "filament ran out", alert_id + 2000))
    return out


@dataclass
class SiteOps:
    """One site's business store and the exporters the gateway runs for it, on the simulated clock."""

    store: Store
    events: EventExporter
    usage: UsageExporter
    oee: OeeExporter
    maintenance: Maintenance
    maintenance_export: MaintenanceExporter


def site_ops(site: str, data_dir: Path, client: httpx.AsyncClient, cfg: InfluxV1, trackers: dict[str, Tracker],
             clock: list[int], emitted: list[Event]) -> SiteOps:
    metas = {m.id: m for m in MACHINES if m.site == site}
    store = Store(data_dir / f"{site}.sqlite")
    writer = InfluxWriter(cfg, client)

    def counters(mid: str) -> dict[str, float]:
        return trackers[mid].counters(clock[0]) if mid in trackers else {}

    def oee(mid: str, start_ns: int, end_ns: int) -> Mapping[str, Any]:
        return trackers[mid].oee(start_ns, end_ns) if mid in trackers else {"shifts": []}

    maintenance = Maintenance(store, MAINTENANCE, list(metas.values()), counters=counters, now_ns=clock[0],
                              emit=emitted.append)
    return SiteOps(store, EventExporter(store, writer, metas, site, TIMEZONE),
                   UsageExporter(store, writer, metas, site, TIMEZONE),
                   OeeExporter(store, writer, metas, site, oee, lambda: clock[0], first_ns=clock[0]),
                   maintenance,
                   MaintenanceExporter(writer, metas, site, maintenance.tasks, lambda: clock[0]))


async def write_operations(ops: SiteOps, trackers: dict[str, Tracker], emitted: list[Event], start_ns: int,
                           end_ns: int) -> None:
    """The site's events (state changes, jobs, alerts, maintenance done) into its business store, then exported
    by the EventExporter; the usage ledger's entries of those events, exported by the UsageExporter; the OEE of
    the shifts closed by `end_ns`."""
    rnd = random.Random(7)
    events = [e for n, mid in enumerate(sorted(trackers)) if mid in ops.events.machines
              for e in (*trackers[mid].events, *alert_events(mid, start_ns, end_ns, rnd, n + 1))]
    events += [e for e in emitted if e.machine in ops.events.machines]
    for e in sorted(events, key=lambda e: e.ts_ns):
        ops.store.execute("INSERT INTO events (ts_ns, machine, type, data) VALUES (?, ?, ?, ?)",
                          (e.ts_ns, e.machine, e.type, json.dumps(e.data)))
    while (n := await ops.events.export_once()) > 0:
        pass
    assert n == 0, "the event exporter could not write to InfluxDB"
    LedgerStore(ops.store).add(entries_from_events(events, Attributor(ATTRIBUTION), grace_s=300.0, now_ns=end_ns))
    while (n := await ops.usage.export_once()) > 0:
        pass
    assert n == 0, "the usage exporter could not write to InfluxDB"
    assert await ops.oee.export_once() > 0, "no shift closed inside the data"


async def write_lab(url: str, db: str, now_ns: int, data_dir: Path) -> None:
    metas = {m.id: m for m in MACHINES}
    cfg = InfluxV1(version=1, url=url, database=db, batch_size=5000)
    metrics = Metrics()
    describe_metrics(metrics)
    sink = InfluxSink(cfg, metas, metrics)
    await sink.open()
    end_ns = now_ns - 60 * S
    start_ns = end_ns - HOURS * 3600 * S
    clock = [start_ns]
    queue = [0.0, 0.0, 0.0, 0.0]  # what the pipeline's gauges read: ingest, sink queue, outbox bytes, oldest age
    metrics.gauge_fn("ingest_queue_readings", lambda: queue[0])
    metrics.gauge_fn("sink_queue_readings", lambda: queue[1], sink="influxdb")
    metrics.gauge_fn("outbox_bytes", lambda: queue[2])
    metrics.gauge_fn("sink_oldest_queued_seconds", lambda: queue[3], sink="influxdb")
    metrics.gauge_fn("readings_dead_lettered_total", lambda: 0.0, sink="influxdb")
    metrics.gauge_fn("readings_dropped_total", lambda: 0.0, sink="influxdb")
    writers = {site: SelfMetricsWriter(metrics, cfg, site=site, host=f"gw-{site}", clock_ns=lambda: clock[0])
               for site in (SITE, OTHER_SITE)}
    models = {m.id: model_for(m, seed=i + 1) for i, m in enumerate(MACHINES)}
    trackers = {mid: Tracker(metas[mid]) for mid in STATEFUL}
    emitted: list[Event] = []  # events the maintenance service emits (maintenance_done)
    client = httpx.AsyncClient()
    ops = {site: site_ops(site, data_dir, client, cfg, trackers, clock, emitted) for site in (SITE, OTHER_SITE)}
    try:
        for n, ts in enumerate(range(start_ns, end_ns, STEP_S * S)):
            clock[0] = ts
            batch: list[Reading] = []
            for mid, model in models.items():
                values = model.step(ts / S)
                units = model.signals()
                for sig, v in values.items():
                    quality = Quality.UNCERTAIN if n % 37 == 0 and isinstance(v, float) else Quality.GOOD
                    batch.append(Reading(mid, sig, v, units[sig].unit, quality, ts, ts))
                if mid in trackers:
                    trackers[mid].step(ts, values)
            result = await sink.write(batch)
            assert result.rejected == []
            metrics.inc("readings_received_total", len(batch), driver="mqtt")
            metrics.inc("readings_written_total", result.written, sink="influxdb")
            metrics.set("driver_connected", 0 if n % 97 == 50 else 1, driver="mqtt")
            queue[:] = [float(n % 7 * 25), float(n % 13 * 40), float(n % 13 * 40 * 180), float(n % 5)]
            metrics.inc("readings_committed_total", len(batch), driver="mqtt")
            if n % 23 == 0:
                metrics.inc("bad_input_total", driver="mqtt", reason="malformed_json")
            if n % 97 == 51:
                metrics.inc("driver_reconnects_total", driver="mqtt")
            if n % 2 == 0:
                for w in writers.values():
                    assert await w.write_once()
            if n * STEP_S == 1800:  # half an hour in, a technician services the first printer and the furnace
                for mid in ("x1c-01", "furnace-01"):
                    ops[SITE].maintenance.done(mid, "service", by="technician", note="", now_ns=ts)
            if n * STEP_S % 1800 == 0:  # the maintenance exporter's minute, every half hour of simulated time
                for o in ops.values():
                    assert await o.maintenance_export.export_once() > 0
        clock[0] = end_ns
        for o in ops.values():
            await write_operations(o, trackers, emitted, start_ns, end_ns)
    finally:
        await sink.close()
        for w in writers.values():
            await w.close()
        for o in ops.values():
            o.store.close()
        await client.aclose()


@dataclass(frozen=True)
class Lab:
    server: InfluxDB1
    db: str
    time_range: TimeRange

    def query(self, q: str) -> list[dict[str, Any]]:
        return self.server.query(q, db=self.db, epoch="ms")


@pytest.fixture(scope="module", params=list(NOWS), ids=lambda name: f"now={name}")
def lab(request: pytest.FixtureRequest, _influxdb_server: InfluxDB1,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = _influxdb_server
    db = f"dash_{uuid.uuid4().hex[:10]}"
    server.create_database(db)
    now_ns = NOWS[request.param] or time.time_ns()
    asyncio.run(write_lab(server.url, db, now_ns, tmp_path_factory.mktemp("business")))
    rng = TimeRange(from_ms=(now_ns - (HOURS * 3600 + 600) * S) // 1_000_000, to_ms=now_ns // 1_000_000)
    yield Lab(server, db, rng)
    server.query(f'DROP DATABASE "{db}"')


def rows(series: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows with at least one value besides time."""
    return [r for s in series for r in s.get("values", []) if any(v is not None for v in r[1:])]


def empty_columns(series: list[dict[str, Any]]) -> set[str]:
    """Columns (besides time) that no row fills and GROUP BY tags that no series has: a field or tag the panel
    reads but nothing writes."""
    columns = {c for s in series for c in s.get("columns", [])[1:]}
    filled = {c for s in series for r in s.get("values", []) for c, v in zip(s["columns"], r, strict=True)
              if v is not None}
    tags = {k for s in series for k in s.get("tags", {})}
    tagged = {k for s in series for k, v in s.get("tags", {}).items() if v}
    return (columns - filled) | {f"tag {k}" for k in tags - tagged}


def resolve_variables(lab: Lab, dashboard: dict[str, Any], choose: dict[str, list[str]]) -> dict[str, Variable]:
    """Run each variable's query in order (each may use the ones before), like Grafana on dashboard load."""
    resolved: dict[str, Variable] = {}
    for v in dashboard["templating"]["list"]:
        name = v["name"]
        if v["type"] == "constant":
            resolved[name] = Variable(name, [v["query"]], [v["query"]])
            continue
        if v["type"] != "query":
            continue
        text = Context(resolved, lab.time_range).render(v["query"])
        values = [str(r[-1]) for s in lab.query(text) for r in s.get("values", [])]
        values = sorted(set(apply_variable_regex(values, v.get("regex"))))
        assert values, f"variable {name}: {text!r} returned nothing"
        selected = choose.get(name) or ([ALL] if v.get("includeAll") else values[:1])
        for value in selected:
            assert value == ALL or value in values, f"variable {name}: {value!r} not among {values}"
        resolved[name] = Variable(name, values, selected, v.get("allValue"))
    return resolved


SCENARIOS: dict[str, dict[str, list[str]]] = {
    "all": {},  # every multi-value variable on "All" (Machine detail picks x1c-01)
    "one-site": {"site": [SITE]},
    "narrowed": {"site": [SITE], "kind": ["printer"], "lab": ["printfarm"], "machine": ["x1c-01", "x1c-02"]},
}


#: Columns that stay empty here by design: OEE performance needs machines counting parts with an ideal cycle
#: time, quality machines reporting good parts or finishing jobs within a shift (neither is measured: null).
UNMEASURED = {"performance", "quality"}

#: Targets that may find nothing: states the simulated machines need not pass through in five hours.
MAY_BE_EMPTY = {("kartech-oee", "Hours per state", state) for state in ("paused", "error", "offline", "maintenance")}

#: Panels a printer-only selection leaves empty by design: they read power meters, and none is selected.
NARROWED_EMPTY = {("kartech-usage", "Energy per day (power meters)")}


def dashboard_cases() -> list[Any]:
    cases = []
    for uid in build.DASHBOARDS:
        for scenario in SCENARIOS:
            if uid == "kartech-gateway-health" and scenario == "narrowed":
                continue
            cases.append(pytest.param(uid, scenario, id=f"{uid}-{scenario}"))
    return cases


@pytest.mark.parametrize(("uid", "scenario"), dashboard_cases())
def test_every_query_returns_rows(lab: Lab, uid: str, scenario: str) -> None:
    dashboard = build.all_dashboards()[uid]
    choose = dict(SCENARIOS[scenario])
    if uid == "kartech-machine":
        choose["machine"] = choose.get("machine", ["x1c-01"])[:1]
    variables = resolve_variables(lab, dashboard, choose)
    ctx = Context(variables, lab.time_range)
    checked = 0
    for where, target in targets(dashboard):
        text = ctx.render(target["query"])
        assert not UNREPLACED.search(text), f"{where}: unreplaced macro in {text!r}"
        got = rows(lab.query(text))
        if scenario == "narrowed" and any(f"{title!r}" in where for u, title in NARROWED_EMPTY if u == uid):
            assert not got, f"{where}: expected no rows without a power meter selected"
            continue
        if not got and any(f"{title!r} target {ref}" == where.split(" ", 2)[2] for u, title, ref in MAY_BE_EMPTY
                           if u == uid):
            continue
        assert got, f"{where}: no rows for {text!r}"
        if "*" not in text and "(/" not in text:  # a wildcard or regex lists every kind's fields
            assert not empty_columns(lab.query(text)) - UNMEASURED, f"{where}: nothing written for these columns"
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("machine", STATEFUL[:4])
def test_machine_detail_for_each_kind_of_machine(lab: Lab, machine: str) -> None:
    dashboard = build.all_dashboards()["kartech-machine"]
    ctx = Context(resolve_variables(lab, dashboard, {"machine": [machine]}), lab.time_range)
    for where, target in targets(dashboard):
        assert rows(lab.query(ctx.render(target["query"]))), f"{where} for {machine}"


def test_kind_variable_lists_machine_kinds_only(lab: Lab) -> None:
    dashboard = build.all_dashboards()["kartech-fleet"]
    variables = resolve_variables(lab, dashboard, {})
    assert sorted(variables["kind"].options) == ["chamber", "env_sensor", "furnace", "power_meter", "printer"]
    assert sorted(variables["site"].options) == sorted([SITE, OTHER_SITE])
    assert "pm-01" in variables["machine"].options  # a machine without lab is listed under "All" labs


def test_filters_really_filter(lab: Lab) -> None:
    """The site filter keeps other sites out, and a lab filter drops machines without that lab."""
    dashboard = build.all_dashboards()["kartech-fleet"]
    state_query = next(t["query"] for _, t in targets(dashboard) if "fill(previous)" in t["query"])

    def machines(choose: dict[str, list[str]]) -> set[str]:
        ctx = Context(resolve_variables(lab, dashboard, choose), lab.time_range)
        return {s["tags"]["machine"] for s in lab.query(ctx.render(state_query))}

    assert machines({"site": [OTHER_SITE]}) == {"mk4-07"}
    assert machines({"site": [SITE]}) == {"x1c-01", "x1c-02", "furnace-01", "chamber-01"}
    assert machines({"site": [SITE], "lab": ["materials"]}) == {"furnace-01", "chamber-01"}
    assert machines({"site": [SITE], "machine": ["x1c-02"]}) == {"x1c-02"}


def test_gateway_rates_are_per_second(lab: Lab) -> None:
    """Readings in, from the self-metrics counters, matches what the simulated lab sent per second."""
    dashboard = build.all_dashboards()["kartech-gateway-health"]
    ctx = Context(resolve_variables(lab, dashboard, {"site": [SITE]}), lab.time_range)
    q = next(t["query"] for _, t in targets(dashboard) if "readings_received_total\"), 1s" in t["query"])
    values = [r[1] for r in rows(lab.query(ctx.render(q)))]
    readings_per_step = sum(len(model_for(m, 1).signals()) for m in MACHINES)
    expected = readings_per_step / STEP_S
    assert values
    assert all(abs(v - expected) < 0.01 * expected for v in values), (expected, values[:5])


def test_a_renamed_field_empties_a_panel(lab: Lab) -> None:
    """The proof is able to fail: the same query on a field that does not exist returns no rows."""
    dashboard = build.all_dashboards()["kartech-fleet"]
    ctx = Context(resolve_variables(lab, dashboard, {}), lab.time_range)
    q = next(t["query"] for _, t in targets(dashboard) if "fill(previous)" in t["query"])
    assert rows(lab.query(ctx.render(q)))
    assert not rows(lab.query(ctx.render(q.replace(f'"{schema.STATE}"', '"machine_state"'))))


def test_variable_queries_run(lab: Lab) -> None:
    for uid, dashboard in build.all_dashboards().items():
        assert list(query_variables(dashboard)), uid
        resolve_variables(lab, dashboard, {"machine": ["x1c-01"]} if uid == "kartech-machine" else {})
