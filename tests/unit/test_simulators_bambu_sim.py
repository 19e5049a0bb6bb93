"""The simulated Bambu printer's reports (simulators/bambu_sim.py, PrintCycle): the printers' words through a
print cycle, and the planned thermal runaway ending in FAILED with its fatal HMS code — read back by the driver's
own report mapping."""

from __future__ import annotations

import json

from drivers.bambu.report import PrinterState
from simulators.bambu_sim import RUNAWAY_HMS, SPOOLS, Ams, PrintCycle
from simulators.dynamics import Printer


def cycle(ams: Ams | None = None) -> PrintCycle:
    return PrintCycle(Printer(seed=3, job_minutes=(1.0, 1.0), gap_minutes=(1.0, 1.0), error_probability=0.0,
                              runout_probability=0.0), series="P1", ams=ams or Ams())


def test_a_print_cycle_uses_the_printers_words_and_units() -> None:
    c = cycle()
    seen: list[str] = []
    for t in range(600):
        r = c.step(float(t))
        if not seen or seen[-1] != r["gcode_state"]:
            seen.append(r["gcode_state"])
        working = r["gcode_state"] in ("PREPARE", "RUNNING", "PAUSE")
        assert r["mc_remaining_time"] in ((0, 1) if working else (0,))  # whole minutes of a one-minute job
    assert seen[:4] == ["IDLE", "PREPARE", "RUNNING", "FINISH"]
    assert "chamber_temper" not in r  # P1: no chamber sensor


def test_a_thermal_runaway_ends_failed_with_the_fatal_hms_code_and_the_driver_reads_an_error() -> None:
    c = cycle()
    state = PrinterState("x1c-02")
    t = 0.0
    while c.step(t)["gcode_state"] != "RUNNING":
        t += 1.0
    c.printer.inject_thermal_runaway(t)
    report = c.step(t)
    while report["gcode_state"] == "RUNNING" and t < 600:
        t += 1.0
        report = c.step(t)
    assert report["gcode_state"] == "FAILED"
    assert report["hms"] == [{"attr": RUNAWAY_HMS[0], "code": RUNAWAY_HMS[1]}]
    readings, bad = state.merge(json.dumps({"print": report}).encode(), 1)
    assert bad == []
    got = {r.signal: r.value for r in readings}
    assert (got["state"], got["hms"], got["error"]) == ("error", "HMS_0300_0200_0001_0003",
                                                       "HMS_0300_0200_0001_0003 (fatal)")


def test_the_ams_feeds_each_job_from_the_next_spool_and_its_remain_falls_while_printing() -> None:
    c = cycle(Ams(remain=[50.0, 50.0, 0.5, 50.0], loaded=0))
    state = PrinterState("p1s-01")
    first = c.step(0.0)
    ams = first["ams"]
    # the shape OpenBambuAPI documents: ids and most numbers as strings, remain an integer, RRGGBBAA colours
    assert (ams["tray_now"], ams["ams"][0]["id"], ams["ams"][0]["humidity"]) == ("0", "0", "4")
    assert [(t["id"], t["tray_type"], t["tray_color"], t["remain"]) for t in ams["ams"][0]["tray"]] == [
        ("0", "PLA", "000000FF", 50), ("1", "PLA", "FFFFFFFF", 50), ("2", "PETG", "F95959FF", 0),
        ("3", "PETG", "0086D6FF", 50)]
    assert (first["vt_tray"]["id"], first["vt_tray"]["tray_type"], first["home_flag"] & 0x80) == ("254", "", 0x80)
    jobs: list[tuple[str, int]] = []  # (tray_now, the lowest remain of that tray) per job
    for t in range(1, 600):
        r = c.step(float(t))
        readings, bad = state.merge(json.dumps({"print": r}).encode(), t)
        assert bad == []
        now = int(r["ams"]["tray_now"])
        remain = r["ams"]["ams"][0]["tray"][now]["remain"]
        if r["gcode_state"] == "PREPARE" and (not jobs or jobs[-1][0] != str(now)):
            jobs.append((str(now), remain))
        elif jobs:
            jobs[-1] = (jobs[-1][0], min(jobs[-1][1], remain))
        got = {x.signal: x.value for x in readings}
        assert (got["filament_type"], got["filament_color"]) == (SPOOLS[now][0], "#" + SPOOLS[now][1][:6])
        assert got["filament_remain_pct"] == remain
    assert [j[0] for j in jobs[:2]] == ["1", "2"]
    assert jobs[0][1] == 49  # 1 % per 20 minutes of printing: a one-minute job takes 0.05 %
    assert jobs[1][1] == 99  # the empty spool was replaced by a full one before the job
