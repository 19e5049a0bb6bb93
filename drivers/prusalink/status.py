"""PrusaLink v1 answers as readings: pure mapping (no I/O, no clock), as the PrusaLink OpenAPI spec documents them.

`/api/v1/status` (every poll): `printer` (required: `state`; optional temperatures, axes, flow, speed, fans) and
`job` (optional: `id`, `progress` %, `time_remaining` s, `time_printing` s). `/api/v1/job` (when the job id
changes): the job's `file.display_name` (long name) — or 204 No Content when there is no job. `/api/v1/info` (once
per connect): serial number and nozzle diameter.

The printer's own word is kept in `printer_state`; `state` is the gateway's machine state:

| PrusaLink | state | note |
|---|---|---|
| IDLE, READY, FINISHED, STOPPED | idle | FINISHED / STOPPED: the job ended (completed / cancelled) |
| PRINTING | running | includes heating up for the job |
| BUSY | running with a job, else idle | starting, finishing or aborting a job; else calibrating, loading |
| PAUSED | paused | |
| ATTENTION | paused with a job, else error | the printer waits for someone (filament run-out, a crash, a question) |
| ERROR | error | |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.reading import Quality, Reading, Value
from gateway.signals import BadInput, BadValue, SignalSettings, convert

FLOAT = SignalSettings(type="float")
INT = SignalSettings(type="int")
TEXT = SignalSettings(type="string")

PRINTER_STATES = ("IDLE", "BUSY", "PRINTING", "PAUSED", "FINISHED", "STOPPED", "ERROR", "ATTENTION", "READY")
_STATE = {"IDLE": "idle", "READY": "idle", "FINISHED": "idle", "STOPPED": "idle", "PRINTING": "running",
          "PAUSED": "paused", "ERROR": "error"}

# printer field -> (signal, unit, settings)
_PRINTER_FIELDS: tuple[tuple[str, str, str | None, SignalSettings], ...] = (
    ("temp_nozzle", "nozzle_temp", "degC", FLOAT),
    ("target_nozzle", "nozzle_target", "degC", FLOAT),
    ("temp_bed", "bed_temp", "degC", FLOAT),
    ("target_bed", "bed_target", "degC", FLOAT),
    ("axis_x", "axis_x_mm", "mm", FLOAT),
    ("axis_y", "axis_y_mm", "mm", FLOAT),
    ("axis_z", "axis_z_mm", "mm", FLOAT),
    ("flow", "flow_pct", "%", FLOAT),
    ("speed", "speed_pct", "%", FLOAT),
    ("fan_hotend", "fan_hotend_rpm", "rpm", FLOAT),
    ("fan_print", "fan_print_rpm", "rpm", FLOAT),
)
_JOB_FIELDS: tuple[tuple[str, str, str | None, SignalSettings], ...] = (
    ("progress", "progress_pct", "%", FLOAT),
    ("time_remaining", "remaining_s", "s", INT),
    ("time_printing", "elapsed_s", "s", INT),
)


def machine_state(word: str, has_job: bool) -> str | None:
    """The gateway's state for a PrusaLink printer state word, or None for a word the spec does not list."""
    if word in _STATE:
        return _STATE[word]
    if word == "BUSY":
        return "running" if has_job else "idle"
    if word == "ATTENTION":
        return "paused" if has_job else "error"
    return None


class PrusaLinkStatus:
    """One printer: turns answers into readings; what does not fit the spec is counted through `bad`."""

    def __init__(self, machine: str, bad: BadInput) -> None:
        self.machine = machine
        self.bad = bad
        self.job_id: int | None = None  # the job whose file name was read (/api/v1/job)
        self.job_file: str | None = None

    def _r(self, signal: str, value: Value, unit: str | None, t_ns: int) -> Reading:
        return Reading(self.machine, signal, value, unit, Quality.GOOD, t_ns, t_ns)

    def _field(self, doc: Mapping[str, Any], key: str, where: str, signal: str, unit: str | None,
               settings: SignalSettings, t_ns: int, out: list[Reading]) -> None:
        if key not in doc:
            return  # every field but printer.state is optional (axes only while the printer stands still)
        value = convert(doc[key], settings)
        if isinstance(value, BadValue):
            self.bad(value.reason, self.machine, f"{where}.{key} = {doc[key]!r}")
        else:
            out.append(self._r(signal, value, unit, t_ns))

    def needs_job(self, status: object) -> bool:
        """Whether /api/v1/job must be read: the status names a job whose file name we do not have yet."""
        job_id = _job_id(status)
        return job_id is not None and job_id != self.job_id

    def on_status(self, status: object, t_ns: int) -> list[Reading]:
        """Readings of one /api/v1/status answer."""
        out: list[Reading] = []
        if not isinstance(status, dict) or not isinstance(status.get("printer"), dict):
            self.bad("unexpected_shape", self.machine, f"/api/v1/status: no printer object in {_short(status)}")
            return out
        printer: dict[str, Any] = status["printer"]
        job = status.get("job")
        if job is not None and not isinstance(job, dict):
            self.bad("unexpected_shape", self.machine, f"/api/v1/status: job is {_short(job)}, not an object")
            job = None
        for key, signal, unit, settings in _PRINTER_FIELDS:
            self._field(printer, key, "printer", signal, unit, settings, t_ns, out)
        job_id = _job_id(status)
        if job is not None:
            for key, signal, unit, settings in _JOB_FIELDS:
                self._field(job, key, "job", signal, unit, settings, t_ns, out)
        if job_id is not None and job_id == self.job_id and self.job_file is not None:
            out += [self._r("job_id", job_id, None, t_ns), self._r("job_file", self.job_file, None, t_ns)]
        elif job_id is None and self.job_id is not None:  # the job is gone: say so (its progress stays as it ended)
            self.job_id, self.job_file = None, None
            out += [self._r("job_id", 0, None, t_ns), self._r("job_file", "", None, t_ns)]
        word = printer.get("state")
        if not isinstance(word, str) or (state := machine_state(word, job_id is not None)) is None:
            self.bad("unknown_state", self.machine, f"/api/v1/status: printer.state = {word!r}; the spec lists "
                     f"{', '.join(PRINTER_STATES)}")
        else:
            out += [self._r("printer_state", word, None, t_ns), self._r("state", state, None, t_ns)]
        return out

    def on_job(self, status: int, job: object) -> None:
        """Take the file name from one /api/v1/job answer (204: no job), read before the status of the same poll."""
        if status == 204 or job is None:
            return
        if not isinstance(job, dict) or type(job.get("id")) is not int:
            self.bad("unexpected_shape", self.machine, f"/api/v1/job: no job id in {_short(job)}")
            return
        file = job.get("file")
        name: object = None
        if isinstance(file, dict):
            name = file.get("display_name") or file.get("name")
        elif job.get("serial_print") is True:
            name = "serial print"  # printing from the serial line (a host such as OctoPrint): no file
        if not isinstance(name, str) or not name:
            self.bad("unexpected_shape", self.machine, f"/api/v1/job: no file name in {_short(job)}")
            name = f"job {job['id']}"
        self.job_id, self.job_file = job["id"], name

    def on_info(self, info: object, t_ns: int) -> list[Reading]:
        """Readings of /api/v1/info (once per connect)."""
        out: list[Reading] = []
        if not isinstance(info, dict):
            self.bad("unexpected_shape", self.machine, f"/api/v1/info: {_short(info)} is not an object")
            return out
        self._field(info, "serial", "info", "serial_number", None, TEXT, t_ns, out)
        self._field(info, "nozzle_diameter", "info", "nozzle_diameter_mm", "mm", FLOAT, t_ns, out)
        return out

    def on_lost(self, t_ns: int) -> list[Reading]:
        return [self._r("state", "offline", None, t_ns)]


def _job_id(status: object) -> int | None:
    if isinstance(status, dict) and isinstance(job := status.get("job"), dict) and type(job.get("id")) is int:
        return int(job["id"])
    return None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

