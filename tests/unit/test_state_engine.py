"""State derivation per kind, offline on stale data, maintenance mode, jobs and usage counters — stepped clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit.ops import NS, T0, Clock, Lab, build, feed, site

from gateway.config.operations import StateSection
from gateway.machines import MachineMeta
from gateway.reading import Quality, Reading, Value
from gateway.state.derive import WorkTimer, derive
from gateway.state.events import Event
from gateway.state.model import SignalValue, resolve


def sig(**values: Value) -> dict[str, SignalValue]:
    return {k: SignalValue(v, None, T0, Quality.GOOD) for k, v in values.items()}


@pytest.mark.parametrize(("kind", "signals", "state"), [
    # printers report their state in their own words
    ("printer", {"state": "printing"}, "running"),
    ("printer", {"state": "Operational"}, "idle"),
    ("printer", {"state": "Paused"}, "paused"),
    ("printer", {"state": "Offline after error"}, "error"),
    ("printer", {"state": "FINISH"}, "idle"),
    # CNC: OPC UA Machinery execution states, by name or by number
    ("cnc", {"state": "Executing"}, "running"),
    ("cnc", {"state": "NotExecuting"}, "idle"),
    ("cnc", {"state": "FEED_HOLD"}, "paused"),
    ("cnc", {"state": 3}, "running"),
    ("cnc", {"state": 1}, "error"),
    # furnaces: a programme (setpoint) or the heater means work, at once
    ("furnace", {"heater_pct": 0.0, "setpoint": 0.0}, "idle"),
    ("furnace", {"heater_pct": 35.0, "setpoint": 0.0}, "running"),
    ("furnace", {"heater_pct": 0.0, "setpoint": 600.0}, "running"),
    # a reported state wins over heater and power
    ("furnace", {"state": "idle", "heater_pct": 50.0}, "idle"),
    # an unknown word falls back to the next source
    ("furnace", {"state": "warming-the-bricks", "heater_pct": 50.0}, "running"),
    # no state source at all: idle while it reports
    ("env_sensor", {"temperature": 21.0}, "idle"),
    ("power_meter", {"power_w": 5000.0}, "idle"),
])
def test_state_per_kind(kind: str, signals: dict[str, Value], state: str) -> None:
    s = resolve(kind, "m1", StateSection())
    got, _ = derive(s, sig(**signals), now_ns=T0, timer=WorkTimer(), maintenance=False, fresh=True)
    assert got == state


def test_power_above_idle_threshold_counts_only_after_busy_after_s() -> None:
    s = resolve("laser", "m1", StateSection())  # defaults: 50 W, busy after 30 s, idle after 60 s
    timer = WorkTimer()
    steps = [  # (seconds since start, power W, expected state)
        (0, 400.0, "idle"), (29, 400.0, "idle"), (30, 400.0, "running"), (40, 10.0, "running"),
        (99, 10.0, "running"), (100, 10.0, "idle"), (101, 400.0, "idle"), (110, 10.0, "idle"),
    ]
    for t, power, want in steps:
        got, basis = derive(s, sig(power_w=power), now_ns=T0 + t * NS, timer=timer, maintenance=False, fresh=True)
        assert (t, got) == (t, want)
        assert basis == "power"


def test_site_mapping_overrides_kind_defaults() -> None:
    section = StateSection.model_validate({
        "kinds": {"cnc": {"state_signal": "execution",
                          "rules": [{"signal": "execution", "equals": "Running Program", "state": "running"}]}},
        "machines": {"cnc-02": {"state_signal": None, "rules": [], "power_busy_w": 500, "busy_after_s": 0}},
    })
    cnc1 = resolve("cnc", "cnc-01", section)
    assert cnc1.state_signal == "execution"
    assert derive(cnc1, sig(execution="running-program"), now_ns=T0, timer=WorkTimer(), maintenance=False,
                  fresh=True) == ("running", "rule")
    assert cnc1.map_state("3") == "running"  # the kind's Machinery numbers stay
    cnc2 = resolve("cnc", "cnc-02", section)
    assert cnc2.state_signal is None
    got, basis = derive(cnc2, sig(execution="Running Program", power_w=600.0), now_ns=T0, timer=WorkTimer(),
                        maintenance=False, fresh=True)
    assert (got, basis) == ("running", "power")


CNC_RULES = StateSection.model_validate({"kinds": {"cnc": {"state_signal": "execution_state", "rules": [
    {"signal": "alarm_code", "above": 0, "state": "error"},
    {"signal": "execution_state", "equals": "OutOfService", "state": "maintenance"},
    {"signal": "execution_state", "in": ["Program Stopped", "Feed Hold"], "state": "paused"},
    {"signal": "spindle_load", "above": 20, "below": 200, "state": "running"},
    {"signal": "door_open", "equals": "true", "state": "paused"},
]}}})


@pytest.mark.parametrize(("signals", "want"), [
    ({"execution_state": "Executing", "alarm_code": 0}, ("running", "reported")),
    ({"execution_state": "Executing", "alarm_code": 17}, ("error", "rule")),  # an alarm code beats Executing
    ({"execution_state": "OutOfService", "alarm_code": 0}, ("maintenance", "rule")),
    ({"execution_state": "program-stopped"}, ("paused", "rule")),
    ({"execution_state": "NotExecuting", "spindle_load": 55.0}, ("running", "rule")),
    ({"execution_state": "NotExecuting", "spindle_load": 250.0}, ("idle", "reported")),  # outside the band
    ({"execution_state": "NotExecuting", "alarm_code": "none"}, ("idle", "reported")),  # text is not above 0
    ({"execution_state": "NotExecuting", "door_open": True}, ("paused", "rule")),
])
def test_state_rules_on_any_signal_come_first(signals: dict[str, Value], want: tuple[str, str]) -> None:
    s = resolve("cnc", "cnc-01", CNC_RULES)
    assert derive(s, sig(**signals), now_ns=T0, timer=WorkTimer(), maintenance=False, fresh=True) == want


def test_a_bad_value_satisfies_no_rule() -> None:
    s = resolve("cnc", "cnc-01", CNC_RULES)
    signals = sig(execution_state="Executing")
    signals["alarm_code"] = SignalValue(None, None, T0, Quality.BAD)
    assert derive(s, signals, now_ns=T0, timer=WorkTimer(), maintenance=False, fresh=True) == ("running", "reported")


def test_maintenance_and_stale_win() -> None:
    s = resolve("printer", "p", StateSection())
    assert derive(s, sig(state="printing"), now_ns=T0, timer=WorkTimer(), maintenance=True, fresh=False)[0] == \
        "maintenance"
    assert derive(s, sig(state="printing"), now_ns=T0, timer=WorkTimer(), maintenance=False, fresh=False) == \
        ("offline", "stale")


def test_machine_turns_offline_after_max_of_3_intervals_and_minimum() -> None:
    clock = Clock()
    hub = Lab([MachineMeta("p", "P", "printer", "mqtt", "krg", expected_interval_s=5.0)], clock, stale_min_s=10.0)
    events: list[Event] = []
    hub.stage.bus.subscribe(events.append)
    hub.update([Reading("p", "state", "printing", None, Quality.GOOD, clock(), clock())])
    assert hub.machine("p")["state"] == "running"
    clock.step(15)
    hub.tick()
    assert hub.machine("p")["state"] == "running"  # 15 s = 3 x 5 s: not yet
    clock.step(0.5)
    hub.tick()
    m = hub.machine("p")
    assert m["state"] == "offline"
    assert m["signals"]["state"]["quality"] == "stale"  # marked stale, the value is kept, not flat-lined
    assert m["signals"]["state"]["value"] == "printing"
    assert [(e.data["from"], e.data["to"]) for e in events if e.type == "state"] == [
        ("offline", "running"), ("running", "offline")]
    assert events[-1].data["duration_s"] == 15.5


def test_driver_disconnect_means_offline_at_once() -> None:
    clock = Clock()
    hub = Lab([MachineMeta("p", "P", "printer", "mqtt", "krg")], clock)
    hub.set_connected(["p"], True)
    hub.update([Reading("p", "state", "idle", None, Quality.GOOD, clock(), clock())])
    assert hub.machine("p")["state"] == "idle"
    hub.set_connected(["p"], False)
    assert hub.machine("p")["state"] == "offline"


def test_printer_jobs_with_material_and_results(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(), tmp_path, clock)
    feed(live, clock, "fdm-01", state="idle", job_id=0, job_file="", filament_used_mm=0.0, progress_pct=0.0)
    clock.step(10)
    feed(live, clock, "fdm-01", state="printing", job_id=7, job_file="bracket.gcode", filament_used_mm=0.0)
    for mm in (500.0, 1500.0, 2500.0):
        clock.step(600)
        feed(live, clock, "fdm-01", state="printing", filament_used_mm=mm, progress_pct=mm / 25)
    clock.step(60)
    feed(live, clock, "fdm-01", state="finished", progress_pct=100.0)
    # the next job restarts the filament counter; it fails half way
    clock.step(120)
    feed(live, clock, "fdm-01", state="printing", job_id=8, job_file="gear.gcode", filament_used_mm=0.0,
         progress_pct=0.0)
    clock.step(300)
    feed(live, clock, "fdm-01", state="printing", filament_used_mm=400.0, progress_pct=50.0)
    clock.step(1)
    feed(live, clock, "fdm-01", state="error")
    jobs = [e for e in reversed(ops.events(machine="fdm-01", type_=None, start_ns=T0, end_ns=clock() + 1,
                                           limit=100)) if e["type"].startswith("job")]
    assert [(e["type"], e["data"]["job"]) for e in jobs] == [
        ("job_start", "bracket.gcode"), ("job_end", "bracket.gcode"), ("job_start", "gear.gcode"),
        ("job_end", "gear.gcode")]
    assert jobs[1]["data"] == {"job": "bracket.gcode", "job_id": "7", "result": "completed", "duration_s": 1860.0,
                               "material_m": 2.5}
    assert jobs[3]["data"]["result"] == "failed"
    assert jobs[3]["data"]["material_m"] == 0.4
    counters = live.engine.counters("fdm-01")
    assert counters["material_m"] == pytest.approx(2.9)
    assert counters["running_s"] == pytest.approx(1860 + 301)
    assert counters["jobs"] == 2
    # a printer without a part counter counts finished jobs as cycles; the failed one is a reject for OEE quality
    assert counters["cycles"] == 2
    rows = ops.store.query("SELECT SUM(total) AS total, SUM(good) AS good FROM production WHERE machine = 'fdm-01'")
    assert (rows[0]["total"], rows[0]["good"]) == (2.0, 1.0)


def test_explicit_job_events_of_serial_printers(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(), tmp_path, clock)
    feed(live, clock, "fdm-01", state="idle", job_file="cube.gcode")
    clock.step(5)
    feed(live, clock, "fdm-01", job_event="start", state="printing")
    clock.step(100)
    feed(live, clock, "fdm-01", job_event="cancelled", state="idle")
    ends = ops.events(machine="fdm-01", type_="job_end", start_ns=T0, end_ns=clock() + 1, limit=10)
    assert [(e["data"]["job"], e["data"]["result"], e["data"]["duration_s"]) for e in ends] == [
        ("cube.gcode", "cancelled", 100.0)]


def test_counters_survive_a_restart_and_count_only_new_use(tmp_path: Path) -> None:
    clock = Clock()
    cfg = site()
    live, ops = build(cfg, tmp_path, clock)
    feed(live, clock, "cnc-01", state="Executing", part_count=100)
    clock.step(30)
    feed(live, clock, "cnc-01", state="Executing", part_count=103)
    live.tick()
    ops.save_counters()
    ops.store.close()
    live2, _ops2 = build(cfg, tmp_path, clock)
    assert live2.engine.counters("cnc-01")["cycles"] == 3
    clock.step(30)
    feed(live2, clock, "cnc-01", state="Executing", part_count=105)
    assert live2.engine.counters("cnc-01")["cycles"] == 5  # not 105: the raw value survived too
    feed(live2, clock, "cnc-01", part_count=2)  # the counter was reset on the machine
    assert live2.engine.counters("cnc-01")["cycles"] == 7


def test_maintenance_mode_is_set_by_a_technician_and_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    cfg = site()
    live, ops = build(cfg, tmp_path, clock)
    feed(live, clock, "cnc-01", state="Executing")
    live.set_maintenance("cnc-01", True, by="timur", note="spindle")
    assert live.machine("cnc-01")["state"] == "maintenance"
    ops.store.close()
    live2, _ = build(cfg, tmp_path, clock)
    assert live2.machine("cnc-01")["state"] == "maintenance"
    modes = [e for e in _ops_events(tmp_path) if e[0] == "maintenance_mode"]
    assert modes == [("maintenance_mode", "cnc-01")]


def _ops_events(tmp_path: Path) -> list[tuple[str, str]]:
    from gateway.store import Store

    store = Store(tmp_path / "business.sqlite")
    try:
        return [(r["type"], r["machine"]) for r in store.query("SELECT type, machine FROM events ORDER BY id")]
    finally:
        store.close()


def test_events_reach_websocket_subscribers_with_ids(tmp_path: Path) -> None:
    clock = Clock()
    live, _ = build(site(), tmp_path, clock)
    q = live.subscribe()
    feed(live, clock, "cnc-01", state="Executing")
    msgs = [q.get_nowait() for _ in range(q.qsize())]
    event = next(m for m in msgs if m["type"] == "event")
    assert event["event"]["type"] == "state"
    assert event["event"]["id"] == 1
    assert event["event"]["data"]["to"] == "running"
    assert msgs[-1]["type"] == "machine"


def test_simulated_thermal_runaway_heats_past_target_then_trips_to_error() -> None:
    from simulators.dynamics import Printer

    p = Printer(seed=3, start_progress_pct=30.0)
    first = p.step(1000.0)
    assert first["state"] == "running"
    p.inject_thermal_runaway(1001.0)
    seen: list[tuple[float, float, str]] = []
    for i in range(1, 21):
        v = p.step(1000.0 + i * 0.5)
        seen.append((i * 0.5, float(v["nozzle_temp"]) - float(v["nozzle_target"] or 215.0), str(v["state"])))
    over = next(t for t, excess, _ in seen if excess > 15)
    trip = next(t for t, _, state in seen if state == "error")
    assert 2.5 <= over <= 3.5  # 8 degC/s from the fault at 1 s
    assert 5.5 <= trip <= 7.0  # firmware trips at target + 40
    assert p.step(1011.0)["nozzle_target"] == 0.0  # heaters off
