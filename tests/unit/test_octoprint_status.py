"""OctoPrint answers to readings: flags to states, 409 as a state, jobs told explicitly, bad input counted."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.octoprint.status import OctoPrintStatus, machine_state

T = 1_764_500_000_000_000_000
FLAGS = dict.fromkeys(("operational", "printing", "cancelling", "pausing", "resuming", "finishing",
                       "closedOrError", "error", "paused", "ready", "sdReady"), False)


def printer(text: str, **flags: bool) -> dict[str, Any]:
    return {"temperature": {"tool0": {"actual": 214.8, "target": 215.0, "offset": 0},
                            "bed": {"actual": 60.1, "target": None, "offset": 0}},
            "sd": {"ready": False}, "state": {"text": text, "flags": {**FLAGS, "operational": True, **flags}}}


def job(name: str | None, completion: float | None, state: str) -> dict[str, Any]:
    return {"job": {"file": {"name": name, "display": name, "path": name, "origin": "local"}},
            "progress": {"completion": completion, "filepos": 0, "printTime": 276 if name else None,
                         "printTimeLeft": 912 if name else None}, "state": state}


class Bad:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, reason: str, machine: str | None, detail: str) -> None:
        self.seen.append((reason, detail))


def poll(model: OctoPrintStatus, status: int, p: object, j: object) -> dict[str, Any]:
    return {r.signal: r.value for r in model.on_poll(status, p, j, T)}


@pytest.mark.parametrize(("flags", "state"), [
    ({"operational": True, "ready": True}, "idle"),
    ({"operational": True, "printing": True}, "running"),
    ({"operational": True, "printing": True, "cancelling": True}, "running"),
    ({"operational": True, "finishing": True}, "running"),
    ({"operational": True, "paused": True}, "paused"),
    ({"operational": True, "printing": True, "pausing": True}, "paused"),
    ({"operational": True, "error": True}, "error"),
    ({"closedOrError": True}, "offline"),
    ({}, "offline"),
])
def test_flags(flags: dict[str, bool], state: str) -> None:
    assert machine_state({**FLAGS, **flags}) == state


def test_a_print_from_start_to_completion_and_the_same_file_again() -> None:
    model = OctoPrintStatus("ender-01", Bad())
    idle = poll(model, 200, printer("Operational", ready=True), job(None, None, "Operational"))
    assert idle == {"nozzle_temp": 214.8, "nozzle_target": 215.0, "bed_temp": 60.1,
                    "printer_state": "Operational", "state": "idle"}
    first = poll(model, 200, printer("Printing", printing=True), job("bracket.gcode", 22.98, "Printing"))
    assert (first["job_event"], first["job_file"], first["state"]) == ("start", "bracket.gcode", "running")
    assert (first["progress_pct"], first["elapsed_s"], first["remaining_s"]) == (22.98, 276, 912)
    assert "job_event" not in poll(model, 200, printer("Printing", printing=True),
                                   job("bracket.gcode", 60.0, "Printing"))
    done = poll(model, 200, printer("Operational", ready=True), job("bracket.gcode", 100.0, "Operational"))
    assert (done["job_event"], done["job_file"], done["state"]) == ("completed", "bracket.gcode", "idle")
    again = poll(model, 200, printer("Printing", printing=True), job("bracket.gcode", 0.5, "Printing"))
    assert again["job_event"] == "start"


def test_cancelled_failed_and_a_new_file_between_two_polls() -> None:
    model = OctoPrintStatus("ender-01", Bad())
    poll(model, 200, printer("Printing", printing=True), job("a.gcode", 10.0, "Printing"))
    poll(model, 200, printer("Cancelling", printing=True, cancelling=True), job("a.gcode", 11.0, "Cancelling"))
    assert poll(model, 200, printer("Operational", ready=True), job("a.gcode", 100.0, "Operational"))[
        "job_event"] == "cancelled"
    poll(model, 200, printer("Printing", printing=True), job("b.gcode", 10.0, "Printing"))
    readings = model.on_poll(200, printer("Printing", printing=True), job("c.gcode", 1.0, "Printing"), T)
    assert [(r.signal, r.value) for r in readings if r.signal.startswith("job")] == [
        ("job_file", "b.gcode"), ("job_event", "completed"), ("job_file", "c.gcode"), ("job_event", "start")]
    assert poll(model, 200, printer("Error", error=True), job("c.gcode", 3.0, "Error"))["job_event"] == "failed"


def test_409_is_a_state_and_a_print_survives_it() -> None:
    model = OctoPrintStatus("ender-01", Bad())
    poll(model, 200, printer("Printing", printing=True), job("a.gcode", 10.0, "Printing"))
    offline = poll(model, 409, {"error": "Printer is not operational"}, job("a.gcode", 10.0, "Offline"))
    assert (offline["state"], offline["printer_state"]) == ("offline", "Offline")
    assert "job_event" not in offline  # the link to the printer is out, not the job
    assert "job_event" not in poll(model, 200, printer("Printing", printing=True), job("a.gcode", 12.0, "Printing"))
    after_error = poll(model, 409, None, job("a.gcode", 12.0, "Offline after error"))
    assert (after_error["state"], after_error["job_event"]) == ("error", "failed")


@pytest.mark.parametrize(("p", "j", "reason", "detail"), [
    ({"state": "Printing"}, job(None, None, "Operational"), "unexpected_shape",
     "/api/printer: no state.flags in {'state': 'Printing'}"),
    (printer("Operational", ready=True), [], "unexpected_shape", "/api/job: [] is not an object"),
    ({**printer("Operational", ready=True), "temperature": {"tool0": {"actual": "hot"}}}, job(None, None, "x"),
     "not_a_number", "temperature.tool0.actual = 'hot'"),
    (printer("Printing", printing=True), {**job("a.gcode", 1.0, "Printing"), "progress": {"printTime": 1.5}},
     "not_an_integer", "progress.printTime = 1.5"),
])
def test_bad_input_is_counted(p: object, j: object, reason: str, detail: str) -> None:
    bad = Bad()
    poll(OctoPrintStatus("ender-01", bad), 200, p, j)
    assert bad.seen == [(reason, detail)]
