"""OctoPrint answers as readings: pure mapping (no I/O, no clock), as OctoPrint's REST API documents them.

`GET /api/printer`: `temperature.tool0` / `bed` / `chamber` (`actual`, `target`), `state.text` and `state.flags`
(`operational`, `printing`, `paused`, `pausing`, `cancelling`, `finishing`, `resuming`, `error`, `closedOrError`,
`ready`). A `409 Conflict` means OctoPrint is up but not connected to the printer: a state (offline, or error when
the connection was closed by an error), not a failure. `GET /api/job`: `job.file` (`display`, else `name`),
`progress.completion` (percent), `printTime` and `printTimeLeft` (seconds, null when unknown), and `state`, the
same text as `state.text` ("Operational", "Printing", "Paused", "Offline after error", ...).

OctoPrint has no job id, so jobs are told to the state engine explicitly (`job_event`, as the serial driver does):
`start` when the printer begins a print, `completed`, `cancelled` or `failed` when it stops — by the last
progress, a `Cancelling` seen, or an error. A reconnect in the middle of a print does not start a second job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.reading import Quality, Reading, Value
from gateway.signals import BadInput, BadValue, SignalSettings, convert

FLOAT = SignalSettings(type="float")
INT = SignalSettings(type="int")
ACTIVE = ("printing", "paused", "pausing", "cancelling", "finishing", "resuming")


def machine_state(flags: Mapping[str, Any]) -> str:
    """The gateway's state from OctoPrint's state flags (an answer of /api/printer)."""
    if flags.get("error"):
        return "error"
    if flags.get("paused") or flags.get("pausing"):
        return "paused"
    if any(flags.get(f) for f in ACTIVE):
        return "running"
    if flags.get("closedOrError") or not flags.get("operational"):
        return "offline"
    return "idle"


class OctoPrintStatus:
    """One printer behind OctoPrint; survives reconnects, so that a job is not started twice."""

    def __init__(self, machine: str, bad: BadInput, *, tool: str = "tool0") -> None:
        self.machine = machine
        self.bad = bad
        self.tool = tool
        self.job_file: str | None = None  # the job in progress, as the gateway announced it
        self.cancelling = False
        self.progress: float | None = None

    def _r(self, signal: str, value: Value, unit: str | None, t_ns: int) -> Reading:
        return Reading(self.machine, signal, value, unit, Quality.GOOD, t_ns, t_ns)

    def _number(self, doc: Mapping[str, Any], key: str, where: str, settings: SignalSettings) -> Value | None:
        raw = doc.get(key)
        if raw is None:
            return None  # documented as null when unknown (no target set, no estimate yet)
        value = convert(raw, settings)
        if isinstance(value, BadValue):
            self.bad(value.reason, self.machine, f"{where}.{key} = {raw!r}")
            return None
        return value

    def on_poll(self, printer_status: int, printer: object, job: object, t_ns: int) -> list[Reading]:
        """Readings of one poll: /api/printer (its status code and body) and /api/job."""
        out: list[Reading] = []
        flags: Mapping[str, Any] | None = None
        text: str | None = None
        if printer_status == 409:  # OctoPrint runs, the printer is not connected
            pass
        elif not isinstance(printer, dict) or not isinstance(state := printer.get("state"), dict) or not isinstance(
                state.get("flags"), dict):
            self.bad("unexpected_shape", self.machine, f"/api/printer: no state.flags in {_short(printer)}")
            return out
        else:
            flags, text = state["flags"], state.get("text")
            self._temperatures(printer.get("temperature"), t_ns, out)
        file, job_text = self._job(job, t_ns, out)
        if flags is None:  # 409: the job's state says why ("Offline", "Offline after error", "Error: ...")
            text = job_text or "Offline"
            new = "error" if text.lower().startswith(("error", "offline after error")) else "offline"
        else:
            new = machine_state(flags)
        self._jobs(new, flags or {}, file, t_ns, out)
        if isinstance(text, str):
            out.append(self._r("printer_state", text, None, t_ns))
        out.append(self._r("state", new, None, t_ns))
        return out

    def _temperatures(self, temps: object, t_ns: int, out: list[Reading]) -> None:
        if temps is None:
            return
        if not isinstance(temps, dict):
            self.bad("unexpected_shape", self.machine, f"/api/printer: temperature is {_short(temps)}")
            return
        for key, prefix in ((self.tool, "nozzle"), ("bed", "bed"), ("chamber", "chamber")):
            data = temps.get(key)
            if data is None:
                continue
            if not isinstance(data, dict):
                self.bad("unexpected_shape", self.machine, f"/api/printer: temperature.{key} is {_short(data)}")
                continue
            for field, signal in (("actual", f"{prefix}_temp"), ("target", f"{prefix}_target")):
                value = self._number(data, field, f"temperature.{key}", FLOAT)
                if value is not None:
                    out.append(self._r(signal, value, "degC", t_ns))

    def _job(self, job: object, t_ns: int, out: list[Reading]) -> tuple[str | None, str | None]:
        """(file name or None, the job's state text) of an /api/job answer; progress readings into `out`."""
        if not isinstance(job, dict):
            self.bad("unexpected_shape", self.machine, f"/api/job: {_short(job)} is not an object")
            return None, None
        text = job.get("state") if isinstance(job.get("state"), str) else None
        info, progress = job.get("job"), job.get("progress")
        file_doc = info.get("file") if isinstance(info, dict) else None
        name = None
        if isinstance(file_doc, dict):
            name = file_doc.get("display") or file_doc.get("name")
        if name is not None and not isinstance(name, str):
            self.bad("unexpected_shape", self.machine, f"/api/job: job.file.name is {_short(name)}")
            name = None
        if isinstance(progress, dict):
            for key, signal, unit, settings in (("completion", "progress_pct", "%", FLOAT),
                                                ("printTime", "elapsed_s", "s", INT),
                                                ("printTimeLeft", "remaining_s", "s", INT)):
                value = self._number(progress, key, "progress", settings)
                if value is not None:
                    out.append(self._r(signal, value, unit, t_ns))
                    if key == "completion":
                        self.progress = float(value)
        elif progress is not None:
            self.bad("unexpected_shape", self.machine, f"/api/job: progress is {_short(progress)}")
        return name or None, text

    def _jobs(self, new: str, flags: Mapping[str, Any], file: str | None, t_ns: int, out: list[Reading]) -> None:
        active = new in ("running", "paused")
        if flags.get("cancelling"):
            self.cancelling = True
        if active and self.job_file is None:
            self.job_file = file or "unknown"
            self.cancelling = False
            out += [self._r("job_file", self.job_file, None, t_ns), self._r("job_event", "start", None, t_ns)]
        elif active and file and file != self.job_file:  # a new print began between two polls
            self._end("completed", t_ns, out)
            self._jobs(new, flags, file, t_ns, out)
        elif not active and self.job_file is not None and new != "offline":
            if new == "error":
                result = "failed"
            elif self.cancelling or (self.progress is not None and self.progress < 99.95):
                result = "cancelled"
            else:
                result = "completed"
            self._end(result, t_ns, out)

    def _end(self, result: str, t_ns: int, out: list[Reading]) -> None:
        assert self.job_file is not None
        out += [self._r("job_file", self.job_file, None, t_ns), self._r("job_event", result, None, t_ns)]
        self.job_file, self.cancelling = None, False

    def on_lost(self, t_ns: int) -> list[Reading]:
        return [self._r("state", "offline", None, t_ns)]


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
