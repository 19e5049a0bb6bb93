"""Moonraker status: deltas merge into the held objects; signals, state words and jobs from print_stats."""

from __future__ import annotations

import math
from typing import Any

from drivers.moonraker.status import Bad, KlipperPrinter, merge

T = 1_700_000_000_000_000_000

FULL: dict[str, Any] = {
    "extruder": {"temperature": 24.51, "target": 0.0, "power": 0.0},
    "heater_bed": {"temperature": 23.8, "target": 0.0, "power": 0.0},
    "print_stats": {"filename": "", "total_duration": 0.0, "print_duration": 0.0, "filament_used": 0.0,
                    "state": "standby", "message": "", "info": {"total_layer": None, "current_layer": None}},
    "virtual_sdcard": {"progress": 0.0, "is_active": False, "file_position": 0, "file_size": 0},
    "display_status": {"progress": 0.0, "message": None},
}


def ready() -> KlipperPrinter:
    p = KlipperPrinter("voron-01")
    p.on_klippy("ready", T)
    p.on_status(FULL, T, full=True)
    return p


def sent(readings: list[Any]) -> dict[str, object]:
    return {r.signal: r.value for r in readings}


def test_a_delta_merges_field_by_field() -> None:
    held: dict[str, dict[str, Any]] = {"extruder": {"temperature": 20.0, "target": 200.0, "power": 0.5},
                                       "heater_bed": {"temperature": 60.0}}
    assert merge(held, {"extruder": {"temperature": 180.25}}) == []
    assert held == {"extruder": {"temperature": 180.25, "target": 200.0, "power": 0.5},
                    "heater_bed": {"temperature": 60.0}}


def test_a_new_object_and_unknown_fields_are_kept() -> None:
    held: dict[str, dict[str, Any]] = {}
    assert merge(held, {"display_status": {"message": "hi"}, "extruder": {"can_extrude": True}}) == []
    assert held == {"display_status": {"message": "hi"}, "extruder": {"can_extrude": True}}


def test_bad_fields_are_refused_and_the_rest_applies() -> None:
    held: dict[str, dict[str, Any]] = {"extruder": {"temperature": 20.0, "target": 0.0}}
    bad = merge(held, {"extruder": {"temperature": "hot", "target": 210.0, "power": math.nan},
                       "heater_bed": 5, "print_stats": {"state": True}})
    assert held == {"extruder": {"temperature": 20.0, "target": 210.0}, "print_stats": {}}
    assert bad == [Bad("not_a_number", "extruder.temperature = 'hot': expected a number"),
                   Bad("non_finite", "extruder.power = nan: not a finite number"),
                   Bad("unexpected_shape", "heater_bed is int, not an object"),
                   Bad("unexpected_shape", "print_stats.state = True: expected a text")]
    assert merge(held, ["extruder"]) == [Bad("unexpected_shape", "status is list, not an object")]


def test_full_status_maps_to_the_printer_signals() -> None:
    p = KlipperPrinter("voron-01")
    p.on_klippy("ready", T)
    out = sent(p.on_status(FULL, T, full=True).readings)
    assert out == {"nozzle_temp": 24.51, "nozzle_target": 0.0, "nozzle_power_pct": 0.0, "bed_temp": 23.8,
                   "bed_target": 0.0, "bed_power_pct": 0.0, "state": "idle", "progress_pct": 0.0,
                   "file_progress_pct": 0.0, "elapsed_s": 0, "total_duration_s": 0, "filament_used_mm": 0.0}


def test_only_what_changed_is_sent_again() -> None:
    p = ready()
    assert sent(p.on_status({"extruder": {"temperature": 25.0}}, T).readings) == {"nozzle_temp": 25.0}
    assert p.on_status({"extruder": {"temperature": 25.0}}, T).readings == []
    assert len(p.snapshot(T)) == 12  # everything again for a quiet printer


def test_a_print_from_start_to_completion() -> None:
    p = ready()
    start = p.on_status({"print_stats": {"state": "printing", "filename": "cube.gcode",
                                         "info": {"total_layer": 50, "current_layer": 1}},
                         "extruder": {"target": 245.0}}, T).readings
    assert [(r.signal, r.value) for r in start][:2] == [("job_file", "cube.gcode"), ("job_event", "start")]
    assert sent(start)["state"] == "running"
    assert sent(start)["total_layers"] == 50
    mid = sent(p.on_status({"print_stats": {"print_duration": 600.0, "filament_used": 812.44},
                            "virtual_sdcard": {"progress": 0.25}, "display_status": {"progress": 0.3}},
                           T).readings)
    assert mid["progress_pct"] == 30.0  # M73 progress (display_status) wins
    assert mid["file_progress_pct"] == 25.0
    assert mid["remaining_s"] == 1800  # print_duration / progress - print_duration, as the docs estimate it
    assert mid["filament_used_mm"] == 812.4
    end = p.on_status({"print_stats": {"state": "complete"}, "virtual_sdcard": {"progress": 1.0},
                       "display_status": {"progress": 1.0}}, T).readings
    assert [(r.signal, r.value) for r in end][-3:] == [("job_file", "cube.gcode"), ("job_result", "completed"),
                                                        ("job_event", "completed")]
    assert sent(end)["state"] == "idle"
    assert sent(end)["remaining_s"] == 0
    assert p.job is None


def test_cancelled_and_error_end_jobs_with_their_result() -> None:
    for word, result, state in (("cancelled", "cancelled", "idle"), ("error", "failed", "error")):
        p = ready()
        p.on_status({"print_stats": {"state": "printing", "filename": "a.gcode"}}, T)
        out = p.on_status({"print_stats": {"state": word, "message": "Move out of range"}}, T).readings
        assert sent(out)["job_result"] == result
        assert sent(out)["state"] == state
    assert sent(out)["error"] == "Move out of range"


def test_paused_is_paused_and_keeps_the_job() -> None:
    p = ready()
    p.on_status({"print_stats": {"state": "printing", "filename": "a.gcode"}}, T)
    out = sent(p.on_status({"print_stats": {"state": "paused"}}, T).readings)
    assert out == {"state": "paused"}
    assert p.job == "a.gcode"


def test_klippy_shutdown_is_an_error_and_fails_the_job() -> None:
    p = ready()
    p.on_status({"print_stats": {"state": "printing", "filename": "a.gcode"}}, T)
    out = sent(p.on_klippy("shutdown", T).readings)
    assert out["state"] == "error"
    assert out["job_result"] == "failed"
    assert str(out["error"]).startswith("Klipper shutdown")


def test_klippy_disconnected_is_offline_and_ready_starts_afresh() -> None:
    p = ready()
    p.on_status({"print_stats": {"state": "printing", "filename": "a.gcode"}}, T)
    out = sent(p.on_klippy("disconnected", T).readings)
    assert out == {"state": "offline", "job_file": "a.gcode", "job_result": "failed", "job_event": "failed"}
    assert sent(p.on_klippy("ready", T).readings) == {}  # nothing until the new subscription's status
    assert p.status == {}


def test_a_reconnect_finds_the_job_still_printing_or_ended() -> None:
    p = ready()
    p.on_status({"print_stats": {"state": "printing", "filename": "a.gcode"},
                 "virtual_sdcard": {"progress": 0.5}}, T)
    p.on_link_lost(T)
    p.on_connected()
    p.on_klippy("ready", T)
    again = p.on_status({**FULL, "print_stats": {**FULL["print_stats"], "state": "printing", "filename": "a.gcode"}},
                        T, full=True).readings
    assert "job_event" not in sent(again)  # the same job, not a second start
    gone = p.on_status({"print_stats": {"state": "standby", "filename": ""}}, T).readings
    assert sent(gone)["job_result"] == "cancelled"  # ended unseen at half progress


def test_an_unknown_state_word_is_reported_once() -> None:
    p = ready()
    first = p.on_status({"print_stats": {"state": "exploded"}}, T)
    second = p.on_status({"extruder": {"temperature": 30.0}}, T)
    assert [b.reason for b in first.bad] == ["unknown_state"]
    assert second.bad == []
