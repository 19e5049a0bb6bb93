"""The Bambu report merge and mapping (drivers/bambu/report.py): full and partial reports, job events, HMS codes,
bad input — with payloads in the printers' own shape (OpenBambuAPI mqtt.md)."""

from __future__ import annotations

import json
from typing import Any

from drivers.bambu.report import PrinterState, hms_code, print_error_code
from gateway.reading import Reading

FULL = {  # an X1C answering pushall while idle (fields trimmed to the ones that matter here, plus a few others)
    "print": {
        "ams_status": 0, "bed_target_temper": 0.0, "bed_temper": 24.5, "chamber_temper": 24.0,
        "command": "push_status", "gcode_file": "", "gcode_state": "IDLE", "hms": [], "layer_num": 0,
        "mc_percent": 0, "mc_print_stage": "1", "mc_remaining_time": 0, "nozzle_target_temper": 0.0,
        "nozzle_temper": 25.3, "print_error": 0, "sequence_id": "2021", "subtask_name": "", "total_layer_num": 0,
        "wifi_signal": "-45dBm", "lights_report": [{"mode": "on", "node": "chamber_light"}],
    }
}


def payload(print_obj: dict[str, Any]) -> bytes:
    return json.dumps({"print": {"command": "push_status", "msg": 1, "sequence_id": "7", **print_obj}}).encode()


def values(readings: list[Reading]) -> dict[str, object]:
    return {r.signal: r.value for r in readings}


def test_a_full_report_is_mapped_to_printer_signals_with_units() -> None:
    st = PrinterState("x1c-01")
    readings, bad = st.merge(json.dumps(FULL).encode(), 5)
    assert bad == []
    assert values(readings) == {
        "nozzle_temp": 25.3, "nozzle_target": 0.0, "bed_temp": 24.5, "bed_target": 0.0, "chamber_temp": 24.0,
        "progress_pct": 0.0, "layer": 0, "total_layers": 0, "remaining_s": 0, "print_error": "", "hms": "",
        "hms_count": 0, "gcode_state": "IDLE", "error": "", "state": "idle",
    }
    units = {r.signal: r.unit for r in readings}
    assert units["nozzle_temp"] == units["bed_target"] == units["chamber_temp"] == "degC"
    assert (units["progress_pct"], units["remaining_s"]) == ("%", "s")
    assert all(r.machine == "x1c-01" and r.source_ns == r.receive_ns == 5 for r in readings)


def test_partial_reports_merge_into_the_held_state() -> None:
    st = PrinterState("p1s-01")
    st.merge(json.dumps(FULL).encode(), 1)
    readings, bad = st.merge(payload({"nozzle_temper": 180.5, "nozzle_target_temper": 220.0}), 2)
    assert bad == []
    got = values(readings)
    assert (got["nozzle_temp"], got["nozzle_target"]) == (180.5, 220.0)
    assert (got["bed_temp"], got["chamber_temp"], got["state"]) == (24.5, 24.0, "idle")  # from the full report
    readings, _ = st.merge(payload({"bed_temper": 40.0}), 3)
    assert (values(readings)["bed_temp"], values(readings)["nozzle_temp"]) == (40.0, 180.5)


def test_a_print_cycle_gives_one_job_with_its_name_and_result() -> None:
    st = PrinterState("p1s-01")
    st.merge(json.dumps(FULL).encode(), 1)
    out = st.merge(payload({"gcode_state": "PREPARE", "subtask_name": "bracket_v3", "gcode_file": "bracket_v3.3mf"}),
                   2)[0]
    assert [(r.signal, r.value) for r in out if r.signal.startswith("job_")] == [
        ("job_event", "start"), ("job_file", "bracket_v3")]
    assert values(out)["state"] == "running"
    out = st.merge(payload({"gcode_state": "RUNNING", "mc_percent": 42, "mc_remaining_time": 17, "layer_num": 12,
                            "total_layer_num": 140}), 3)[0]
    got = values(out)
    assert (got["progress_pct"], got["remaining_s"], got["layer"], got["total_layers"]) == (42.0, 1020, 12, 140)
    assert "job_event" not in got  # the same job goes on
    out = st.merge(payload({"gcode_state": "PAUSE"}), 4)[0]
    assert values(out)["state"] == "paused"
    assert "job_event" not in values(out)
    out = st.merge(payload({"gcode_state": "FINISH", "mc_percent": 100, "mc_remaining_time": 0}), 5)[0]
    assert [(r.signal, r.value) for r in out if r.signal.startswith("job_")] == [
        ("job_event", "finish"), ("job_file", "bracket_v3"), ("job_result", "completed")]
    assert values(out)["state"] == "idle"
    # FINISH stays on screen until the next job: no second end
    assert "job_event" not in values(st.merge(payload({"nozzle_temper": 60.0}), 6)[0])


def test_a_cancelled_print_and_a_failed_one_are_told_apart_by_print_error() -> None:
    st = PrinterState("x1c-01")
    st.merge(payload({"gcode_state": "RUNNING", "subtask_name": "gear_housing"}), 1)
    out = values(st.merge(payload({"gcode_state": "FAILED", "print_error": 50348044}), 2)[0])
    assert (out["job_event"], out["job_result"], out["print_error"], out["state"], out["error"]) == (
        "cancelled", "cancelled", "0300_400C", "idle", "")
    st.merge(payload({"gcode_state": "PREPARE", "print_error": 0, "subtask_name": "drone_arm"}), 3)
    out = values(st.merge(payload({"gcode_state": "FAILED", "print_error": 0x07008006}), 4)[0])
    assert (out["job_event"], out["job_result"], out["print_error"]) == ("failed", "failed", "0700_8006")
    assert (out["state"], out["error"]) == ("error", "print error 0700_8006")


def test_hms_codes_are_written_as_the_wiki_does_and_a_fatal_one_is_an_error() -> None:
    assert hms_code(0x03000100, 0x00010007) == "HMS_0300_0100_0001_0007"
    assert hms_code(50331904, 65543) == "HMS_0300_0100_0001_0007"  # ha-bambulab's example, in decimal
    assert print_error_code(50348044) == "0300_400C"
    assert print_error_code(0) == ""
    st = PrinterState("x1c-02")
    st.merge(payload({"gcode_state": "RUNNING", "subtask_name": "mine_sensor_mount"}), 1)
    out = values(st.merge(payload({"hms": [{"attr": 0x07002000, "code": 0x00030001}]}), 2)[0])  # common
    assert (out["hms"], out["hms_count"], out["state"], out["error"]) == ("HMS_0700_2000_0003_0001", 1, "running", "")
    out = values(st.merge(payload({"gcode_state": "FAILED", "hms": [
        {"attr": 0x03000200, "code": 0x00010003}, {"attr": 0x07002000, "code": 0x00030001}]}), 3)[0])
    assert out["hms"] == "HMS_0300_0200_0001_0003,HMS_0700_2000_0003_0001"
    assert (out["state"], out["error"], out["job_result"]) == ("error", "HMS_0300_0200_0001_0003 (fatal)", "failed")
    out = values(st.merge(payload({"gcode_state": "IDLE", "hms": []}), 4)[0])
    assert (out["hms"], out["hms_count"], out["state"], out["error"]) == ("", 0, "idle", "")


def test_bad_input_is_reported_and_never_stops_the_good_values() -> None:
    st = PrinterState("x1c-01")
    readings, bad = st.merge(b'{"print": {"nozzle_temper": 2', 1)
    assert readings == []
    assert [b.reason for b in bad] == ["malformed_json"]
    assert [b.reason for b in st.merge(b"\xff\xfe", 1)[1]] == ["malformed_json"]
    assert [b.reason for b in st.merge(b"[1, 2]", 1)[1]] == ["unexpected_shape"]
    assert [b.reason for b in st.merge(b'{"print": "IDLE"}', 1)[1]] == ["unexpected_shape"]
    assert st.merge(b'{"info": {"command": "get_version", "module": []}}', 1) == ([], [])  # not a status report
    readings, bad = st.merge(payload({"nozzle_temper": "hot", "bed_temper": 60.0, "gcode_state": "IDLE"}), 2)
    assert [(b.reason, b.detail) for b in bad] == [("not_a_number", "nozzle_temper: 'hot'")]
    assert values(readings)["bed_temp"] == 60.0
    assert "nozzle_temp" not in values(readings)
    assert st.merge(payload({"bed_temper": 61.0}), 3)[1] == []  # counted once, not with every later delta
    readings, bad = st.merge(payload({"hms": [{"attr": "x"}, {"attr": 1, "code": 2}], "gcode_state": "WARP"}), 4)
    assert [b.reason for b in bad] == ["unexpected_shape", "unknown_state"]
    assert values(readings)["hms_count"] == 1
    assert "state" not in values(readings)
    assert [b.reason for b in st.merge(payload({"hms": {"attr": 1}}), 5)[1]] == ["unexpected_shape"]


def tray(tid: str, kind: str, color: str, remain: int) -> dict[str, Any]:
    """One AMS tray as the printers send it (OpenBambuAPI pushall; numbers other than remain are strings)."""
    return {"id": tid, "remain": remain, "tray_type": kind, "tray_color": color, "tray_info_idx": "GFA00",
            "tray_sub_brands": "", "tray_weight": "1000", "tray_diameter": "1.75", "nozzle_temp_max": "230",
            "nozzle_temp_min": "190", "cols": [color], "tag_uid": "0000000000000000"}


AMS = {  # one AMS, tray 0 empty, PLA black / PLA white / PETG red in trays 1-3, tray 2 feeding the nozzle
    "ams": {"ams": [{"id": "0", "humidity": "4", "temp": "22.7", "tray": [
        {"id": "0"}, tray("1", "PLA", "000000FF", 80), tray("2", "PLA", "DFE2E3FF", 46),
        tray("3", "PETG", "F95959FF", -1)]}],
        "ams_exist_bits": "1", "tray_exist_bits": "e", "tray_now": "2", "tray_pre": "2", "tray_tar": "2",
        "version": 4},
    "home_flag": 0x587,  # 0x80: the AMS estimates what is left on its spools
    "vt_tray": {"id": "254", "remain": 0, "tray_type": "", "tray_color": "00000000", "tray_info_idx": ""},
}


def filament(readings: list[Reading]) -> tuple[object, object, object]:
    got = {r.signal: r for r in readings}
    remain = got["filament_remain_pct"]
    assert remain.unit == "%"
    assert (remain.quality == "bad") == (remain.value is None)  # no reading: a bad one, without a value
    return got["filament_type"].value, got["filament_color"].value, remain.value


def test_the_ams_tray_feeding_the_nozzle_gives_the_filament_its_colour_and_what_is_left() -> None:
    st = PrinterState("x1c-01")
    readings, bad = st.merge(json.dumps({"print": {**FULL["print"], **AMS}}).encode(), 1)
    assert bad == []
    assert filament(readings) == ("PLA", "#DFE2E3", 46)
    assert values(readings)["state"] == "idle"  # the other signals are unchanged
    # a printer that has never sent `ams` (a P1P without one): no filament signals at all
    assert not {"filament_type", "filament_color", "filament_remain_pct"} & set(values(PrinterState("p1p-01").merge(
        json.dumps(FULL).encode(), 1)[0]))


def test_partial_reports_keep_the_trays_and_merge_them_by_unit_and_tray_id() -> None:
    st = PrinterState("p1s-01")
    st.merge(json.dumps({"print": {**FULL["print"], **AMS}}).encode(), 1)
    # a delta without `ams` (most P1/A1 deltas): the trays are kept
    readings, bad = st.merge(payload({"nozzle_temper": 200.0}), 2)
    assert (bad, filament(readings)) == ([], ("PLA", "#DFE2E3", 46))
    # a delta with one tray's remain only: merged into that tray, the others kept
    readings, bad = st.merge(payload({"ams": {"ams": [{"id": "0", "tray": [{"id": "2", "remain": 45}]}]}}), 3)
    assert (bad, filament(readings)) == ([], ("PLA", "#DFE2E3", 45))
    # the nozzle switched to tray 1 (unit 0): its type and colour come from the full report
    readings, _ = st.merge(payload({"ams": {"tray_now": "1"}}), 4)
    assert filament(readings) == ("PLA", "#000000", 80)
    # a second AMS unit sent alone does not erase the first; tray_now 5 is unit 1, tray 1
    second = {"ams": [{"id": "1", "tray": [tray("1", "PETG", "0086D6FF", 12)]}], "tray_now": "5"}
    readings, _ = st.merge(payload({"ams": second}), 5)
    assert filament(readings) == ("PETG", "#0086D6", 12)
    readings, _ = st.merge(payload({"ams": {"tray_now": "3"}}), 6)
    assert filament(readings) == ("PETG", "#F95959", None)  # unit 0 tray 3, remain -1: unknown


def test_no_tray_the_external_spool_and_an_empty_tray() -> None:
    st = PrinterState("p1s-01")
    st.merge(json.dumps({"print": {**FULL["print"], **AMS}}).encode(), 1)
    readings, _ = st.merge(payload({"ams": {"tray_now": "255"}}), 2)  # nothing loaded
    assert filament(readings) == ("", "", None)
    readings, _ = st.merge(payload({"ams": {"tray_now": "254"}}), 3)  # the external spool holder, empty
    assert filament(readings) == ("", "", None)
    readings, _ = st.merge(payload({"vt_tray": {"id": "254", "tray_type": "PETG", "tray_color": "00AE42FF",
                                                "remain": 0}}), 4)
    assert filament(readings) == ("PETG", "#00AE42", None)  # nothing measures what is left on it
    readings, _ = st.merge(payload({"ams": {"tray_now": "0"}}), 5)  # tray 0 was sent as {"id": "0"}: empty
    assert filament(readings) == ("", "", None)
    st.merge(payload({"ams": {"ams": [{"id": "0", "tray": [tray("0", "PLA", "FFFFFFFF", 100)]}]}}), 6)
    readings, _ = st.merge(payload({"ams": {"ams": [{"id": "0", "tray": [{"id": "0"}]}]}}), 7)  # spool taken out
    assert filament(readings) == ("", "", None)


def test_remain_is_no_reading_while_the_ams_does_not_estimate_it() -> None:
    st = PrinterState("x1c-01")
    readings, _ = st.merge(json.dumps({"print": {**FULL["print"], **AMS, "home_flag": 0x507}}).encode(), 1)
    assert filament(readings) == ("PLA", "#DFE2E3", None)  # 0x80 off: the printer sends 0 or stale values
    readings, _ = st.merge(payload({"home_flag": -1067070064}), 2)  # signed, as some printers send it; 0x80 on
    assert filament(readings) == ("PLA", "#DFE2E3", 46)


def test_bad_ams_input_is_counted_and_the_rest_is_read() -> None:
    st = PrinterState("x1c-01")
    st.merge(json.dumps({"print": {**FULL["print"], **AMS}}).encode(), 1)
    readings, bad = st.merge(payload({"ams": {"tray_now": "two", "ams": [
        {"id": "0", "tray": [{"id": "2", "tray_color": "pink", "remain": "45"}, {"remain": 3}]}, {"tray": []}]}}), 2)
    assert [(b.reason, b.detail) for b in bad] == [
        ("unexpected_shape", "ams.tray_now 'two': not a tray number"),
        ("unexpected_shape", "ams 0 tray 2 tray_color: 'pink'"),
        ("unexpected_shape", "ams 0 tray 2 remain: '45'"),
        ("unexpected_shape", "ams tray {'remain': 3}: needs an id"),
        ("unexpected_shape", "ams unit {'tray': []}: needs an id and a tray list")]
    assert filament(readings) == ("PLA", "#DFE2E3", 46)
    assert [b.reason for b in st.merge(payload({"ams": []}), 3)[1]] == ["unexpected_shape"]
    assert [b.reason for b in st.merge(payload({"ams": {"ams": {}}}), 4)[1]] == ["unexpected_shape"]
    assert [b.reason for b in st.merge(payload({"vt_tray": "none"}), 5)[1]] == ["unexpected_shape"]
