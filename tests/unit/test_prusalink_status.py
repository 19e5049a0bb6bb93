"""PrusaLink answers to readings: the spec's fields, state words and job lifecycle; bad input counted, never read."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.prusalink.status import PRINTER_STATES, PrusaLinkStatus, machine_state
from gateway.reading import Value

T = 1_764_500_000_000_000_000

# /api/v1/status and /api/v1/job as the spec's examples give them
PRINTING: dict[str, Any] = {
    "job": {"id": 420, "progress": 42.0, "time_remaining": 520, "time_printing": 526},
    "storage": {"path": "/usb/", "name": "usb", "read_only": False},
    "printer": {"state": "PRINTING", "temp_nozzle": 214.9, "target_nozzle": 215.0, "temp_bed": 59.5,
                "target_bed": 60.0, "axis_z": 0.5, "flow": 95, "speed": 100, "fan_hotend": 420, "fan_print": 420},
}
JOB: dict[str, Any] = {"id": 420, "state": "PRINTING", "progress": 42.0, "time_printing": 526,
                       "file": {"name": "SPICE~1.BGC", "display_name": "Spice_Harvester_0.3mm_PLA_MK4_12m.bgcode",
                                "path": "/usb", "m_timestamp": 1648042843}}


class Bad:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str]] = []

    def __call__(self, reason: str, machine: str | None, detail: str) -> None:
        self.seen.append((reason, machine, detail))


def values(model: PrusaLinkStatus, status: object) -> dict[str, tuple[Value, str | None]]:
    return {r.signal: (r.value, r.unit) for r in model.on_status(status, T)}


def test_every_word_of_the_spec_maps_to_a_machine_state() -> None:
    assert {w: (machine_state(w, False), machine_state(w, True)) for w in PRINTER_STATES} == {
        "IDLE": ("idle", "idle"), "READY": ("idle", "idle"), "FINISHED": ("idle", "idle"),
        "STOPPED": ("idle", "idle"), "PRINTING": ("running", "running"), "PAUSED": ("paused", "paused"),
        "ERROR": ("error", "error"), "BUSY": ("idle", "running"), "ATTENTION": ("error", "paused")}
    assert machine_state("printing", True) is None  # the spec's words are upper case


def test_a_printing_status_and_its_job() -> None:
    bad = Bad()
    model = PrusaLinkStatus("mk4-01", bad)
    assert model.needs_job(PRINTING)
    model.on_job(200, JOB)
    assert not model.needs_job(PRINTING)
    assert values(model, PRINTING) == {
        "nozzle_temp": (214.9, "degC"), "nozzle_target": (215.0, "degC"), "bed_temp": (59.5, "degC"),
        "bed_target": (60.0, "degC"), "axis_z_mm": (0.5, "mm"), "flow_pct": (95.0, "%"), "speed_pct": (100.0, "%"),
        "fan_hotend_rpm": (420.0, "rpm"), "fan_print_rpm": (420.0, "rpm"), "progress_pct": (42.0, "%"),
        "remaining_s": (520, "s"), "elapsed_s": (526, "s"), "job_id": (420, None),
        "job_file": ("Spice_Harvester_0.3mm_PLA_MK4_12m.bgcode", None), "printer_state": ("PRINTING", None),
        "state": ("running", None)}
    assert bad.seen == []


def test_job_fields_wait_for_the_file_name_and_are_cleared_once_when_the_job_is_gone() -> None:
    model = PrusaLinkStatus("mk4-01", Bad())
    assert "job_file" not in values(model, PRINTING)  # /api/v1/job not read yet: no name, no job id
    model.on_job(200, JOB)
    assert values(model, PRINTING)["job_id"] == (420, None)
    idle = {"printer": {"state": "IDLE", "temp_nozzle": 24.0}}
    assert not model.needs_job(idle)
    model.on_job(204, None)
    first = values(model, idle)
    assert (first["job_id"], first["job_file"], first["state"]) == ((0, None), ("", None), ("idle", None))
    assert "progress_pct" not in first  # the ended job's progress stays: it tells completed from cancelled
    assert set(values(model, idle)) == {"nozzle_temp", "printer_state", "state"}


def test_a_serial_print_and_a_file_with_only_its_short_name() -> None:
    model = PrusaLinkStatus("mk4-01", Bad())
    model.on_job(200, {"id": 7, "state": "PRINTING", "progress": 1.0, "time_printing": 3, "serial_print": True})
    assert model.job_file == "serial print"
    model.on_job(200, {**JOB, "id": 8, "file": {"name": "SPICE~1.BGC", "path": "/usb", "m_timestamp": 1}})
    assert model.job_file == "SPICE~1.BGC"


@pytest.mark.parametrize(("status", "reason", "detail"), [
    ([], "unexpected_shape", "/api/v1/status: no printer object in []"),
    ({"printer": "PRINTING"}, "unexpected_shape", "/api/v1/status: no printer object in {'printer': 'PRINTING'}"),
    ({"printer": {"state": "WARMING_UP"}}, "unknown_state", "/api/v1/status: printer.state = 'WARMING_UP'; the spec "
     "lists IDLE, BUSY, PRINTING, PAUSED, FINISHED, STOPPED, ERROR, ATTENTION, READY"),
    ({"printer": {"temp_nozzle": 20.0}}, "unknown_state", "/api/v1/status: printer.state = None; the spec lists "
     "IDLE, BUSY, PRINTING, PAUSED, FINISHED, STOPPED, ERROR, ATTENTION, READY"),
    ({"printer": {"state": "IDLE", "temp_bed": "hot"}}, "not_a_number", "printer.temp_bed = 'hot'"),
    ({"printer": {"state": "IDLE", "temp_bed": None}}, "null_value", "printer.temp_bed = None"),
    ({"printer": {"state": "IDLE", "temp_bed": [60]}}, "not_a_number", "printer.temp_bed = [60]"),
    ({"printer": {"state": "PRINTING"}, "job": {"id": 1, "time_remaining": 12.5}}, "not_an_integer",
     "job.time_remaining = 12.5"),
    ({"printer": {"state": "IDLE"}, "job": "none"}, "unexpected_shape",
     "/api/v1/status: job is 'none', not an object"),
])
def test_what_does_not_fit_the_spec_is_counted_and_the_rest_read(status: object, reason: str, detail: str) -> None:
    bad = Bad()
    out = values(PrusaLinkStatus("mk4-01", bad), status)
    assert bad.seen == [(reason, "mk4-01", detail)]
    assert all(v is not None for v, _ in out.values())
    if isinstance(status, dict) and isinstance(status.get("printer"), dict) and reason not in ("unknown_state",):
        assert "state" in out


def test_a_job_answer_without_id_or_name() -> None:
    bad = Bad()
    model = PrusaLinkStatus("mk4-01", bad)
    model.on_job(200, {"state": "PRINTING"})
    model.on_job(200, {"id": 5, "state": "PRINTING", "file": {"path": "/usb"}})
    assert [r for r, _, _ in bad.seen] == ["unexpected_shape", "unexpected_shape"]
    assert (model.job_id, model.job_file) == (5, "job 5")


def test_info_and_loss() -> None:
    model = PrusaLinkStatus("mk4-01", Bad())
    info = {"nozzle_diameter": 0.4, "mmu": False, "serial": "CZPX4720X004XC34242", "hostname": "prusa-mk4"}
    assert {r.signal: r.value for r in model.on_info(info, T)} == {
        "serial_number": "CZPX4720X004XC34242", "nozzle_diameter_mm": 0.4}
    assert [(r.signal, r.value) for r in model.on_lost(T)] == [("state", "offline")]
