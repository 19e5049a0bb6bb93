"""What a Klipper printer is doing, from Moonraker's printer objects, as readings.

Pure state tracking (no I/O, no clock): feed the full status of a subscription, its `notify_status_update`
deltas and Klippy's state with the time they arrived; get `Reading`s (only what changed) and the bad input found.
A delta carries only the fields that changed since the last update (Moonraker docs, "Subscription Updates"); it
is merged into the held status object by object, field by field, so a delta with only `extruder.temperature`
leaves every other value as it was. The job survives a lost connection, so a dropped WebSocket does not invent a
second job start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.reading import Quality, Reading, Value

# the objects and fields subscribed to (printer.objects.subscribe); fields left out never arrive
OBJECTS: dict[str, list[str]] = {
    "extruder": ["temperature", "target", "power"],
    "heater_bed": ["temperature", "target", "power"],
    "print_stats": ["state", "filename", "print_duration", "total_duration", "filament_used", "message", "info"],
    "virtual_sdcard": ["progress", "is_active", "file_position", "file_size"],
    "display_status": ["progress", "message"],
}
# print_stats.state (Moonraker docs, printer_objects.md "Print Stats State") -> the gateway's state words
PRINT_STATES = {"standby": "idle", "printing": "running", "paused": "paused", "complete": "idle",
                "cancelled": "idle", "error": "error"}
# server.info klippy_state (Moonraker docs, server.md): ready reads the printer; shutdown and error are faults
KLIPPY_STATES = ("ready", "startup", "shutdown", "error", "disconnected")
JOB_END = {"complete": "completed", "cancelled": "cancelled", "error": "failed"}

_NUMBER = ("number", (int, float))
_TEXT = ("text", (str,))
_BOOL = ("bool", (bool,))
_INFO = ("object", (dict,))
# what each subscribed field must be; a field of another type is bad input and keeps its previous value
FIELD_TYPES: dict[str, dict[str, tuple[str, tuple[type, ...]]]] = {
    "extruder": {"temperature": _NUMBER, "target": _NUMBER, "power": _NUMBER},
    "heater_bed": {"temperature": _NUMBER, "target": _NUMBER, "power": _NUMBER},
    "print_stats": {"state": _TEXT, "filename": _TEXT, "print_duration": _NUMBER, "total_duration": _NUMBER,
                    "filament_used": _NUMBER, "message": _TEXT, "info": _INFO},
    "virtual_sdcard": {"progress": _NUMBER, "is_active": _BOOL, "file_position": _NUMBER, "file_size": _NUMBER},
    "display_status": {"progress": _NUMBER, "message": ("text", (str, type(None)))},
}


@dataclass(frozen=True, slots=True)
class Bad:
    """Input that could not be used: a `bad_input` reason and what was wrong."""

    reason: str
    detail: str


@dataclass(slots=True)
class Update:
    readings: list[Reading] = field(default_factory=list)
    bad: list[Bad] = field(default_factory=list)


def merge(held: dict[str, dict[str, Any]], delta: object) -> list[Bad]:
    """Merge a status (or a delta of one) into `held`, object by object and field by field.

    Known fields of a wrong type are refused (and reported); the rest of the delta still applies. Fields this
    driver does not know are kept as they come."""
    if not isinstance(delta, dict):
        return [Bad("unexpected_shape", f"status is {type(delta).__name__}, not an object")]
    bad: list[Bad] = []
    for name, fields in delta.items():
        if not isinstance(fields, dict):
            bad.append(Bad("unexpected_shape", f"{name} is {type(fields).__name__}, not an object"))
            continue
        types = FIELD_TYPES.get(name, {})
        target = held.setdefault(name, {})
        for key, value in fields.items():
            problem = _check(types.get(key), value)
            if problem is not None:
                bad.append(Bad(problem[0], f"{name}.{key} = {value!r}: {problem[1]}"))
                continue
            target[key] = value
    return bad


def _check(expected: tuple[str, tuple[type, ...]] | None, value: object) -> tuple[str, str] | None:
    if expected is None:
        return None
    what, types = expected
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        return ("not_a_number" if what == "number" else "unexpected_shape", f"expected a {what}")
    if isinstance(value, float) and not math.isfinite(value):
        return ("non_finite", "not a finite number")
    return None


class KlipperPrinter:
    """One printer's held status and job; every `on_*` method returns the readings it produced."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        self.status: dict[str, dict[str, Any]] = {}
        self.klippy: str | None = None
        self.job: str | None = None  # the file of the job in progress
        self.job_progress = 0.0
        self._sent: dict[str, Value] = {}  # last value sent per signal: only changes are sent again
        self._unknown: str | None = None
        self._now_ns = 0

    # --- inputs -------------------------------------------------------------------------------------------
    def on_connected(self) -> None:
        """A new connection: the next status is complete and every value is sent again."""
        self.status = {}
        self._sent = {}

    def on_link_lost(self, now_ns: int) -> list[Reading]:
        """Moonraker cannot be reached: the printer is offline (its job is kept; the next status settles it)."""
        self._now_ns = now_ns
        self._sent.clear()
        return [self._r("state", "offline")]

    def on_klippy(self, state: str, now_ns: int) -> Update:
        """Klippy's state from server.info or a notify_klippy_* notification."""
        self._now_ns = now_ns
        if state != self.klippy and state in ("ready", "startup", "disconnected"):
            self.status = {}  # a (re)started Klippy: what was held is gone; the next subscription brings it
        self.klippy = state
        return self._update(Update())

    def on_status(self, status: object, now_ns: int, *, full: bool = False) -> Update:
        """The status of a subscription response (`full`: replaces what is held) or a notify_status_update delta."""
        self._now_ns = now_ns
        if full:
            self.status = {}
        return self._update(Update(bad=merge(self.status, status)))

    def snapshot(self, now_ns: int) -> list[Reading]:
        """Every current value again (a quiet printer stays online)."""
        self._now_ns = now_ns
        self._sent.clear()
        return self._update(Update()).readings

    # --- mapping ------------------------------------------------------------------------------------------
    def _r(self, signal: str, value: Value, unit: str | None = None, quality: Quality = Quality.GOOD) -> Reading:
        return Reading(self.machine, signal, value, unit, quality, self._now_ns, self._now_ns)

    def _update(self, up: Update) -> Update:
        signals = self.signals(up)
        # a job starts before the running state it explains; it ends after the final figures of its file
        before, after = self._follow_job()
        up.readings += before
        for signal, (value, unit, quality) in signals.items():
            if self._sent.get(signal, _UNSET) != value:
                self._sent[signal] = value
                up.readings.append(self._r(signal, value, unit, quality))
        up.readings += after
        return up

    def state(self) -> str | None:
        if self.klippy in ("shutdown", "error"):
            return "error"
        if self.klippy != "ready":
            return "offline" if self.klippy is not None else None
        word = self.status.get("print_stats", {}).get("state")
        return PRINT_STATES.get(word) if isinstance(word, str) else None

    def signals(self, up: Update) -> dict[str, tuple[Value, str | None, Quality]]:
        """The gateway's signals from the held status (and unknown state words reported into `up`)."""
        s = self.status
        out: dict[str, tuple[Value, str | None, Quality]] = {}
        good = Quality.GOOD
        for obj, prefix in (("extruder", "nozzle"), ("heater_bed", "bed")):
            o = s.get(obj, {})
            for key, signal in (("temperature", f"{prefix}_temp"), ("target", f"{prefix}_target")):
                if key in o:
                    out[signal] = (round(float(o[key]), 2), "degC", good)
            if "power" in o:
                out[f"{prefix}_power_pct"] = (round(100.0 * min(max(float(o["power"]), 0.0), 1.0), 1), "%", good)
        word = s.get("print_stats", {}).get("state")
        # an unknown word is reported once, not at every update
        if isinstance(word, str) and word not in PRINT_STATES and self.klippy == "ready" and word != self._unknown:
            self._unknown = word
            up.bad.append(Bad("unknown_state", f"print_stats.state {word!r} is none of {', '.join(PRINT_STATES)}"))
        state = self.state()
        if state is not None:
            out["state"] = (state, None, good)
        ps = s.get("print_stats", {})
        vsd = s.get("virtual_sdcard", {})
        display = s.get("display_status", {})
        file_progress = _fraction(vsd.get("progress"))
        progress = _fraction(display.get("progress")) if "progress" in display else file_progress
        if progress is not None:
            out["progress_pct"] = (round(100.0 * progress, 2), "%", good)
        if file_progress is not None:
            out["file_progress_pct"] = (round(100.0 * file_progress, 2), "%", good)
            if self.job is not None:
                self.job_progress = file_progress
        for key, signal in (("print_duration", "elapsed_s"), ("total_duration", "total_duration_s")):
            if key in ps:
                out[signal] = (int(ps[key]), "s", good)
        if "filament_used" in ps:
            out["filament_used_mm"] = (round(float(ps["filament_used"]), 1), "mm", good)
        info = ps.get("info")
        if isinstance(info, dict):
            for key, signal in (("current_layer", "layer"), ("total_layer", "total_layers")):
                n = info.get(key)
                if isinstance(n, int) and not isinstance(n, bool):
                    out[signal] = (n, None, good)
        # remaining time as the Moonraker docs estimate it without file metadata: print_duration / progress
        duration = ps.get("print_duration")
        if state in ("running", "paused") and file_progress and isinstance(duration, (int, float)) and duration > 0:
            remaining = duration / file_progress - duration
            out["remaining_s"] = (int(max(remaining, 0.0)), "s", Quality.UNCERTAIN)
        elif state == "idle" and "remaining_s" in self._sent:
            out["remaining_s"] = (0, "s", good)
        message = display.get("message")
        if isinstance(message, str) and message:
            out["message"] = (message, None, good)
        if self.klippy == "shutdown":
            out["error"] = ("Klipper shutdown (emergency stop or MCU error); FIRMWARE_RESTART brings it back",
                            None, good)
        elif self.klippy == "error":
            out["error"] = ("Klipper could not start (see klippy.log; often a printer.cfg error)", None, good)
        elif ps.get("state") == "error" and ps.get("message"):
            out["error"] = (str(ps["message"]), None, good)
        return out

    def _follow_job(self) -> tuple[list[Reading], list[Reading]]:
        """Start and end jobs from print_stats.state; a Klippy shutdown or disconnect ends a job as failed.
        Returns the readings to send before and after the printer's other signals."""
        before: list[Reading] = []
        after: list[Reading] = []
        if self.job is not None and self.klippy in ("shutdown", "error", "disconnected"):
            self._end("failed", after)
            return before, after
        ps = self.status.get("print_stats", {})
        word, filename = ps.get("state"), ps.get("filename")
        if self.klippy != "ready" or word not in PRINT_STATES:
            return before, after
        if word in ("printing", "paused"):
            if self.job is not None and isinstance(filename, str) and filename and filename != self.job:
                self._end(self._guess(), before)  # another file now: the last one ended while we were away
            if self.job is None:
                self._start(filename if isinstance(filename, str) and filename else "unknown", before)
        elif self.job is not None:
            self._end(JOB_END.get(word) or self._guess(), after)
        return before, after

    def _guess(self) -> str:
        """How a job ended that we did not see end: by the file progress last seen."""
        return "completed" if self.job_progress >= 0.9995 else "cancelled"

    def _start(self, file: str, out: list[Reading]) -> None:
        self.job = file
        self.job_progress = 0.0
        out += [self._r("job_file", file), self._r("job_event", "start")]
        self._sent["job_file"] = file

    def _end(self, result: str, out: list[Reading]) -> None:
        assert self.job is not None
        out += [self._r("job_file", self.job), self._r("job_result", result), self._r("job_event", result)]
        self.job = None


_UNSET = object()


def _fraction(value: object) -> float | None:
    """A progress fraction (0.0 to 1.0) as Klipper reports it, clamped; None when there is none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(max(float(value), 0.0), 1.0)
    return None


def objects_param() -> Mapping[str, list[str]]:
    """The `objects` parameter of printer.objects.subscribe."""
    return {name: list(fields) for name, fields in OBJECTS.items()}
