"""Physics and determinism of the simulated machines; time is stepped, never slept."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import defaultdict

import pytest

from simulators.dynamics import (
    MODELS,
    Chamber,
    EnvSensor,
    Furnace,
    LaserCutter,
    Model,
    PowerMeter,
    Printer,
    SignalValue,
)

PY_TYPES = {"float": float, "int": int, "bool": bool, "string": str}


Trace = list[tuple[float, dict[str, SignalValue]]]


def run(model: Model, start_s: float, end_s: float, step_s: float) -> Trace:
    out: Trace = []
    t = start_s
    while t <= end_s:
        out.append((t, model.step(t)))
        t += step_s
    return out


def all_models() -> list[Model]:
    return [
        Furnace(seed=1),
        Chamber(seed=1),
        EnvSensor(seed=1),
        PowerMeter(seed=1),
        PowerMeter(seed=1, phases=3),
        Printer(seed=1, start_progress_pct=30),
    ]


@pytest.mark.parametrize("model", all_models(), ids=lambda m: f"{m.kind}-{len(m.signals())}")
def test_step_returns_exactly_the_declared_signals_with_their_types(model: Model) -> None:
    for _, values in run(model, 1_718_000_000.0, 1_718_000_000.0 + 3 * 3600, 30.0):
        assert values.keys() == model.signals().keys()
        for name, value in values.items():
            assert type(value) is PY_TYPES[model.signals()[name].type], (name, value)


def test_every_kind_is_registered() -> None:
    assert set(MODELS) == {"furnace", "chamber", "env_sensor", "power_meter", "printer", "laser"}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_same_seed_same_output_other_seed_other_output(kind: str) -> None:
    def trace(seed: int) -> list[dict[str, SignalValue]]:
        return [v for _, v in run(MODELS[kind](seed=seed), 1_718_000_000.0, 1_718_000_000.0 + 7200, 7.5)]

    assert trace(42) == trace(42)
    assert trace(42) != trace(43)


# --- furnace ---


def furnace_trace(**kw: float) -> tuple[Furnace, Trace]:
    f = Furnace(seed=7, **kw)  # type: ignore[arg-type]
    return f, run(f, 0.0, f.cycle_s * 2, 5.0)


def span(f: Furnace, name: str) -> tuple[float, float]:
    s = next(s for s in f.spans if s.segment.name == name)
    return s.start_s, s.end_s


def test_furnace_reaches_setpoint_after_the_ramp_and_holds_it() -> None:
    f, trace = furnace_trace()
    for hold, target, settle_s in (("hold-1", 600.0, 300.0), ("hold-2", 1000.0, 600.0)):
        start, end = span(f, hold)
        held = [v["temperature"] for t, v in trace if start + settle_s <= t < end]
        assert held
        assert all(abs(float(x) - target) < 5.0 for x in held), (hold, min(held), max(held))
        during = [float(v["temperature"]) for t, v in trace if start <= t < end]
        assert max(during) - target < 15.0  # overshoot is small


def test_furnace_heater_saturates_on_a_fast_ramp_and_stays_in_range() -> None:
    f, trace = furnace_trace()
    start, end = span(f, "ramp-2")
    assert any(v["heater_pct"] == 100.0 for t, v in trace if start <= t < end)
    assert all(0.0 <= float(v["heater_pct"]) <= 100.0 for _, v in trace)


def test_furnace_programme_loops_with_idle_gap_and_door_only_opens_when_idle_and_cool() -> None:
    _, trace = furnace_trace()
    states = [v["state"] for _, v in trace]
    first_idle = states.index("idle")
    assert "running" in states[first_idle:]
    assert all(v["setpoint"] == 0.0 and v["heater_pct"] == 0.0 for _, v in trace if v["state"] == "idle")
    opened = [v for _, v in trace if v["door_open"]]
    assert opened
    assert all(v["state"] == "idle" and float(v["temperature"]) < 210.0 for v in opened)
    names = {v["programme"] for _, v in trace}
    assert names == {"ramp-1", "hold-1", "ramp-2", "hold-2", "cool", "none"}


def test_furnace_can_start_mid_programme() -> None:
    probe = Furnace(seed=1)
    start, _ = span(probe, "hold-2")
    f = Furnace(seed=1, start_offset_s=start + 60)
    v = f.step(5000.0)
    assert v["programme"] == "hold-2"
    assert v["state"] == "running"
    assert abs(float(v["temperature"]) - 1000.0) < 2.0


def test_furnace_rejects_a_ramp_without_rate() -> None:
    from simulators.dynamics import Segment

    with pytest.raises(ValueError, match="rate_c_per_min must be positive"):
        Furnace(seed=1, programme=(Segment("ramp-1", "ramp", target_c=500),))


# --- chamber ---


def test_chamber_follows_setpoints_and_cycles_its_compressor_on_a_cold_step() -> None:
    c = Chamber(seed=3)
    trace = run(c, 0.0, c.cycle_s, 2.0)
    damp_end = (20 + 40) * 60.0
    at_end = next(v for t, v in trace if t >= damp_end - 10)
    assert abs(float(at_end["temperature"]) - 40.0) < 1.0
    assert abs(float(at_end["humidity"]) - 93.0) < 3.0
    cold = [v for t, v in trace if damp_end + 30 * 60 <= t < damp_end + 45 * 60]
    assert all(abs(float(v["temperature"]) + 10.0) < 1.5 for v in cold)
    assert {v["compressor_on"] for v in cold} == {True, False}
    assert {v["state"] for _, v in trace} == {"running", "idle"}


# --- lab air ---


def test_co2_rises_with_people_in_working_hours_and_falls_at_night() -> None:
    tz = zoneinfo.ZoneInfo("Asia/Almaty")
    tuesday = dt.datetime(2024, 6, 11, 0, 0, tzinfo=tz).timestamp()
    e = EnvSensor(seed=5)
    by_hour = {}
    for t, v in run(e, tuesday, tuesday + 24 * 3600, 60.0):
        by_hour[dt.datetime.fromtimestamp(t, tz).hour] = float(v["co2_ppm"])
    assert by_hour[16] > 700.0
    assert by_hour[6] < 550.0
    assert by_hour[23] < by_hour[17]


# --- power meter ---


@pytest.mark.parametrize("phases", [1, 3])
def test_energy_is_the_integral_of_power_and_never_decreases(phases: int) -> None:
    m = PowerMeter(seed=9, phases=phases)  # type: ignore[arg-type]
    trace = run(m, 0.0, 6 * 3600.0, 3.0)
    energy = [float(v["energy_kwh"]) for _, v in trace]
    assert all(b >= a for a, b in itertools.pairwise(energy))
    integral_kwh = sum(float(v["power_w"]) for _, v in trace) * 3.0 / 3.6e6
    assert energy[-1] - energy[0] == pytest.approx(integral_kwh, rel=0.03)
    powers = [float(v["power_w"]) for _, v in trace]
    assert min(powers) < 200 < 1500 < max(powers)  # idle base and bursts
    for _, v in trace:
        assert 220.0 < float(v["voltage_v"]) < 240.0
        expected_a = float(v["power_w"]) / phases / (float(v["voltage_v"]) * float(v["power_factor"]))
        assert float(v["current_a"]) == pytest.approx(expected_a, rel=0.01, abs=0.002)


def test_time_going_backwards_does_not_undo_energy() -> None:
    m = PowerMeter(seed=1)
    m.step(1000.0)
    later = float(m.step(2000.0)["energy_kwh"])
    assert float(m.step(1500.0)["energy_kwh"]) == later


# --- printer ---


def test_printer_jobs_progress_monotonically_and_pass_through_their_stages() -> None:
    p = Printer(
        seed=11, job_minutes=(5, 10), gap_minutes=(1, 2), runout_probability=0.5, error_probability=0.0
    )
    trace = run(p, 0.0, 6 * 3600.0, 5.0)
    jobs: dict[int, list[dict[str, SignalValue]]] = defaultdict(list)
    for _, v in trace:
        if v["job_id"]:
            jobs[int(v["job_id"])].append(v)
    assert len(jobs) >= 10
    assert list(jobs) == list(range(1, len(jobs) + 1))
    for job in jobs.values():
        for key in ("progress_pct", "filament_used_mm", "layer"):
            seq = [float(v[key]) for v in job]
            assert all(b >= a for a, b in itertools.pairwise(seq)), key
        assert job[0]["stage"] == "heating"
        assert job[0]["progress_pct"] == 0.0
        assert len({v["job_file"] for v in job}) == 1
    finished = list(jobs.values())[:-1]
    assert all(job[-1]["progress_pct"] == 100.0 and job[-1]["state"] == "idle" for job in finished)
    states = [v["state"] for _, v in trace]
    assert {"idle", "running", "paused"} <= set(states)
    assert any(a == "paused" and b == "running" for a, b in itertools.pairwise(states))
    printing = [v for _, v in trace if v["stage"] == "printing"]
    assert all(float(v["nozzle_temp"]) > 210 and float(v["bed_temp"]) > 57 for v in printing)


def test_printer_error_aborts_the_job_then_goes_idle() -> None:
    p = Printer(seed=2, job_minutes=(5, 10), gap_minutes=(1, 2), error_probability=1.0)
    trace = [v for _, v in run(p, 0.0, 3600.0, 5.0)]
    states = [v["state"] for v in trace]
    i = states.index("error")
    assert trace[i]["nozzle_target"] == 0.0
    assert float(trace[i]["progress_pct"]) < 100.0
    assert "idle" in states[i:]
    assert max(int(v["job_id"]) for v in trace) >= 2


def test_printer_can_start_mid_job() -> None:
    v = Printer(seed=4, start_progress_pct=55).step(0.0)
    assert (v["state"], v["stage"], v["progress_pct"]) == ("running", "printing", 55.0)
    assert float(v["nozzle_temp"]) > 210
    assert int(v["remaining_s"]) > 0


# --- laser cutter ---


def test_laser_sessions_are_framed_by_swipes_of_one_badge_and_its_meter_counts_up() -> None:
    laser = LaserCutter(seed=3, badges=("04A1B2C3", "04D4E5F6"))
    trace = run(laser, 0.0, 4 * 3600.0, 1.0)
    swipes = [(t, v["badge"]) for t, v in trace if "badge" in v]
    assert len(swipes) >= 10
    # the first within a minute (the demo shows a check-in at once); then in, out, in, out ... by the same badge
    assert swipes[0][0] < 60.0
    ins, outs = swipes[0::2], swipes[1::2]
    assert all(a[1] == b[1] for a, b in zip(ins, outs, strict=False))
    energy = [v["energy_kwh"] for _, v in trace]
    assert energy == sorted(energy)
    # cutting (kW) happens only inside sessions; outside them the plug reads almost nothing
    inside = set()
    for (t_in, _), (t_out, _) in zip(ins, outs, strict=False):
        inside |= {t for t, _ in trace if t_in <= t <= t_out}
    loads = [(t, float(v["power_w"])) for t, v in trace]
    assert any(p > 1500 for t, p in loads if t in inside)
    assert all(p < 100 for t, p in loads if t not in inside and t > swipes[1][0] and t < swipes[-1][0])


def test_a_laser_without_badges_still_cuts() -> None:
    trace = run(LaserCutter(seed=3), 0.0, 3600.0, 1.0)
    assert not any("badge" in v for _, v in trace)
    assert any(float(v["power_w"]) > 1500 for _, v in trace)
