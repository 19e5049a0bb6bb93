"""The simulated Bambu printer's reports (simulators/bambu_sim.py, PrintCycle): the printers' words through a
print cycle, and the planned thermal runaway ending in FAILED with its fatal HMS code — read back by the driver's
own report mapping."""

from __future__ import annotations

import json

from drivers.bambu.report import PrinterState
from simulators.bambu_sim import RUNAWAY_HMS, PrintCycle
from simulators.dynamics import Printer


def cycle() -> PrintCycle:
    return PrintCycle(Printer(seed=3, job_minutes=(1.0, 1.0), gap_minutes=(1.0, 1.0), error_probability=0.0,
                              runout_probability=0.0), series="P1")


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
