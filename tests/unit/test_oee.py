"""OEE on a scripted shift against hand-computed values; shift calendars across midnight and time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from kit.ops import NS, Clock, build, feed, site

from gateway.config.operations import ShiftsSection
from gateway.oee import ShiftWindow, factors, shift_windows, state_intervals, totals

CNC = """\
machines:
  - {id: cnc-01, name: CNC 1, kind: cnc, lab: shop, driver: mqtt, broker: lab, expected_interval_s: 600,
     topics: [{topic: "lab/{site}/{machine}/t", fields: {state: {type: string}}}]}
state:
  machines:
    cnc-01: {ideal_cycle_s: 60}
shifts:
  calendar:
    - {id: day, start: "08:00", end: "16:00", days: [mon, tue, wed, thu, fri]}
  planned_downtime:
    - {name: lunch, start: "12:00", end: "12:30"}
"""


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


def test_oee_of_a_scripted_shift_matches_hand_computed_values(tmp_path: Path) -> None:
    # Wednesday 2026-11-18, Asia/Almaty (UTC+5): the 08:00-16:00 shift is 03:00-11:00 UTC
    clock = Clock(utc("2026-11-18T03:00:00"))
    live, ops = build(site(machines=CNC), tmp_path, clock)
    script = [  # local time, execution state, part counter, reject counter
        ("08:00", "NotExecuting", 0, 0),
        ("08:30", "Executing", 0, 0),
        ("10:00", "Executing", 100, 0),
        ("10:30", "Alarm", 130, 0),
        ("10:45", "Executing", 130, 0),
        ("11:30", "Executing", 150, 5),
        ("12:00", "NotExecuting", 170, 5),   # lunch: planned downtime
        ("12:30", "Executing", 170, 5),
        ("14:00", "Executing", 250, 10),
        ("14:55", "Executing", 300, 15),
        ("15:00", "NotExecuting", 300, 15),
        ("16:00", "NotExecuting", 300, 15),
    ]
    for hhmm, state, parts, rejects in script:
        h, m = (int(x) for x in hhmm.split(":"))
        clock.t = utc(f"2026-11-18T{h - 5:02d}:{m:02d}:00")
        feed(live, clock, "cnc-01", state=state, part_count=parts, reject_count=rejects)
    report = ops.oee("cnc-01", utc("2026-11-18T03:00:00"), utc("2026-11-18T11:00:00"))
    [shift] = report["shifts"]
    # planned: 8 h - 30 min lunch = 27000 s; running: 08:30-10:30, 10:45-12:00, 12:30-15:00 = 20700 s
    assert (shift["planned_s"], shift["running_s"]) == (27000.0, 20700.0)
    assert shift["by_state_s"] == {"error": 900.0, "idle": 5400.0, "running": 20700.0}
    assert shift["availability"] == round(20700 / 27000, 4) == 0.7667
    assert shift["performance"] == round(60 * 300 / 20700, 4) == 0.8696
    assert shift["quality"] == round(285 / 300, 4) == 0.95
    assert shift["oee"] == round(20700 / 27000 * 60 * 300 / 20700 * 285 / 300, 4) == 0.6333
    assert (shift["parts"], shift["good"]) == (300.0, 285.0)
    assert report["days"] == [{"day": "2026-11-18", **{k: v for k, v in shift.items()
                                                      if k not in ("shift", "day", "start", "end")}}]


def test_unmeasured_factors_are_null_and_count_as_one() -> None:
    w = ShiftWindow("day", date(2026, 11, 18), 0, 100 * NS)
    t = totals(w, [("running", 0, 80 * NS), ("idle", 80 * NS, 100 * NS)], [])
    f = factors(t, None)
    assert (f["availability"], f["performance"], f["quality"], f["oee"]) == (0.8, None, None, 0.8)
    fast = factors(totals(w, [("running", 0, 10 * NS)], [(0, 5.0, None)]), 10.0)
    assert (fast["performance"], fast["performance_capped"]) == (1.0, True)  # 50 s of ideal work in 10 s


def test_night_shift_crosses_midnight_in_the_site_time_zone() -> None:
    cfg = ShiftsSection.model_validate({
        "calendar": [{"id": "day", "start": "08:00", "end": "20:00"},
                     {"id": "night", "start": "20:00", "end": "08:00", "days": ["fri"]}],
        "planned_downtime": [{"name": "midnight meal", "start": "00:00", "end": "00:30"}],
    })
    # Friday 2026-11-20 20:00 to Saturday 08:00 local (Asia/Almaty, UTC+5)
    ws = shift_windows(cfg, "Asia/Almaty", utc("2026-11-20T15:00:00"), utc("2026-11-21T03:00:00"))
    assert [(w.shift, w.day.isoformat()) for w in ws] == [("night", "2026-11-20")]
    night = ws[0]
    assert (night.start_ns, night.end_ns) == (utc("2026-11-20T15:00:00"), utc("2026-11-21T03:00:00"))
    assert night.breaks == ((utc("2026-11-20T19:00:00"), utc("2026-11-20T19:30:00")),)
    assert sum(e - s for s, e in night.planned()) == 11.5 * 3600 * NS
    # a window ending mid-shift is clipped (the current shift so far)
    now = shift_windows(cfg, "Asia/Almaty", utc("2026-11-21T00:00:00"), utc("2026-11-21T01:00:00"))
    assert [(w.shift, w.start_ns, w.end_ns) for w in now] == [
        ("night", utc("2026-11-21T00:00:00"), utc("2026-11-21T01:00:00"))]


@pytest.mark.parametrize(("changes", "expected"), [
    ([], [("idle", 0, 10)]),
    ([(-5, "running")], [("running", 0, 10)]),
    ([(3, "running"), (7, "error"), (12, "idle")], [("idle", 0, 3), ("running", 3, 7), ("error", 7, 10)]),
])
def test_state_intervals(changes: list[tuple[int, str]], expected: list[tuple[str, int, int]]) -> None:
    assert state_intervals("idle", changes, 0, 10) == expected
