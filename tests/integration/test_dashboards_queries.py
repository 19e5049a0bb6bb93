"""Every panel, annotation and variable query of every dashboard, with Grafana's substitution applied, runs
against real InfluxDB 1.6 after simulated machines have written hours of telemetry and must return rows.

Telemetry comes from simulators/dynamics.py models through the real InfluxSink; the gateway's own metrics from a
real Metrics object through the real SelfMetricsWriter; events, alerts, maintenance, OEE and usage are sample
points in the schema dashboards/README.md documents, derived from the simulated machines' states and jobs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import time
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from dashboards import build, schema
from dashboards.interpolate import ALL, Context, TimeRange, Variable, apply_variable_regex
from dashboards.validate import query_variables, targets
from gateway.config.models import InfluxV1
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Quality, Reading
from gateway.runtime import describe_metrics
from gateway.self_metrics import SelfMetricsWriter
from gateway.sinks.influx import InfluxSink
from gateway.state.events import Event
from gateway.state.influx import event_line, oee_line
from simulators.dynamics import Chamber, EnvSensor, Furnace, Model, PowerMeter, Printer
from simulators.services import InfluxDB1

pytestmark = pytest.mark.integration

SITE, OTHER_SITE = "karaganda-hub", "almaty-demo"
TZ = zoneinfo.ZoneInfo("Asia/Almaty")
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
            self.state, self.since_ns = state, ts
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


def alert_events(mid: str, start_ns: int, end_ns: int, rnd: random.Random, alert_id: int) -> list[Event]:
    """One closed alert per machine; the furnace and a printer keep one open."""
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


def engine_lines(trackers: dict[str, Tracker], metas: dict[str, MachineMeta], start_ns: int, end_ns: int) -> list[str]:
    """Events and OEE through the state engine's own line builders; maintenance and usage per the README."""
    rnd = random.Random(7)
    out: list[str] = []
    for n, (mid, tr) in enumerate(trackers.items()):
        m = metas[mid]
        events = [*tr.events, *alert_events(mid, start_ns, end_ns, rnd, n + 1),
                  Event(start_ns + 1800 * S, mid, "maintenance_done", {"task": "nozzle_change", "by": "technician",
                                                                        "note": ""})]
        out += [event_line(e, m, m.site) for e in events]
        # OEE per 8 h shift, at the shift start (which may be before the data)
        shift_start = start_ns - (start_ns // S % (8 * 3600)) * S
        for k, shift in enumerate(("A", "B")):
            run = tr.running_s / 2 + 60
            line = oee_line(mid, m, m.site, shift, shift_start + k * 8 * 3600 * S, {
                "availability": run / 28800, "performance": 0.9, "quality": 0.95, "oee": run / 28800 * 0.855,
                "planned_s": 28800.0, "running_s": run, "parts": 40})
            assert line is not None
            out.append(line)
        base = f"kind={m.kind}" + (f",lab={m.lab}" if m.lab else "") + f",machine={mid},site={m.site}"
        for h in range(HOURS):
            used = 380.0 + 30 * h + rnd.random()
            status = "ok" if used < 400 else "due_soon" if used < 500 else "due"
            out.append(f'maintenance,{base},task=service used={used},limit=500.0,unit="h",due_pct={used / 5},'
                       f'status="{status}" {start_ns + h * 3600 * S}')
        jobs = [e for e in tr.events if e.type == "job_end"]
        for k, e in enumerate(jobs):
            month = dt.datetime.fromtimestamp(e.ts_ns / S, TZ).strftime("%Y-%m")
            partner = ",partner=qarmet-lab" if k % 2 == 0 else ""
            out.append(f'usage,{base},month={month}{partner} running_s={e.data["duration_s"]},'
                       f'material_used={e.data["material_m"] or 1.0},material_unit="m",'
                       f'energy_kwh={e.data["duration_s"] / 3600 * 1.2} {e.ts_ns}')
    return out


async def write_lab(url: str, db: str, now_ns: int) -> None:
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
    try:
        for n, ts in enumerate(range(start_ns, end_ns, STEP_S * S)):
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
                clock[0] = ts
                for w in writers.values():
                    assert await w.write_once()
        lines = engine_lines(trackers, metas, start_ns, end_ns)
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{url}/write", params={"db": db, "precision": "n"}, content="\n".join(lines))
            assert r.status_code == 204, r.text
    finally:
        await sink.close()
        for w in writers.values():
            await w._client.aclose()


@dataclass(frozen=True)
class Lab:
    server: InfluxDB1
    db: str
    time_range: TimeRange

    def query(self, q: str) -> list[dict[str, Any]]:
        return self.server.query(q, db=self.db, epoch="ms")


@pytest.fixture(scope="module")
def lab(_influxdb_server: InfluxDB1) -> Iterator[Lab]:
    server = _influxdb_server
    db = f"dash_{uuid.uuid4().hex[:10]}"
    server.create_database(db)
    now_ns = time.time_ns()
    asyncio.run(write_lab(server.url, db, now_ns))
    rng = TimeRange(from_ms=(now_ns - (HOURS * 3600 + 600) * S) // 1_000_000, to_ms=now_ns // 1_000_000)
    yield Lab(server, db, rng)
    server.query(f'DROP DATABASE "{db}"')


def rows(series: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows with at least one value besides time."""
    return [r for s in series for r in s.get("values", []) if any(v is not None for v in r[1:])]


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
        assert got, f"{where}: no rows for {text!r}"
        checked += 1
    assert checked >= 4


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
