"""What a Bambu Lab printer reports on `device/<serial>/report`, held as one state and turned into readings.

Pure (no I/O, no clock): `PrinterState.merge(payload, now_ns)` takes one report's JSON bytes and returns the
readings and the bad input it found. X1 printers send the whole `print` object every time; P1 and A1 printers send
only the fields that changed (a full object answers `pushall`). Both are merged field by field into the state held
for the machine, so every reading reflects the printer as a whole, not only the last delta.

Field names, units and words as the printers send them (OpenBambuAPI mqtt.md, ha-bambulab pybambu): temperatures
in degC (`nozzle_temper`, `nozzle_target_temper`, `bed_temper`, `bed_target_temper`, `chamber_temper`),
`mc_percent` in %, `mc_remaining_time` in minutes, `layer_num` / `total_layer_num`, `subtask_name` (the job's
name) and `gcode_file`, `gcode_state` (IDLE, PREPARE, RUNNING, PAUSE, FINISH, FAILED, SLICING, INIT, OFFLINE),
`print_error` (an integer shown as XXXX_XXXX) and `hms`, a list of {attr, code} shown as HMS_XXXX_XXXX_XXXX_XXXX
(Bambu Lab wiki, HMS codes), whose severity is the upper half of `code` (1 fatal, 2 serious, 3 common, 4 info).

The AMS (OpenBambuAPI mqtt.md `print.ams`): `ams.ams[]` units by `id`, each with `tray[]` by `id` carrying
`tray_type` ("PLA"), `tray_color` (RRGGBBAA hex) and `remain` (% of the spool left, -1 unknown); a tray sent as only
`{"id": ...}` is empty. `ams.tray_now` is the tray feeding the nozzle: 255 none, 254 the external spool
(`print.vt_tray`), otherwise unit * 4 + tray (an AMS HT unit, id 128 and up, has one tray: tray_now is its id).
Units and trays are merged by id, so a report with part of the AMS, or none, keeps what was known. `remain` is an
estimate the AMS makes only while its "update remaining capacity" option is on, bit 0x80 of `home_flag`
(ha-bambulab pybambu); otherwise the printer sends 0 and there is no reading, as for the external spool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.reading import Quality, Reading, Value
from gateway.signals import BadValue, SignalSettings, convert

# gcode_state -> machine state; FINISH and FAILED are the end of a job the printer keeps showing until the next one
GCODE_STATES: dict[str, str] = {
    "IDLE": "idle", "INIT": "idle", "FINISH": "idle", "FAILED": "idle",
    "PREPARE": "running", "RUNNING": "running", "SLICING": "running",
    "PAUSE": "paused",
    "OFFLINE": "offline",
}
WORKING = frozenset({"PREPARE", "RUNNING", "SLICING", "PAUSE"})
CANCELLED = 0x0300400C  # print_error "The task was canceled." (the user stopped the print)
HMS_SEVERITY = {1: "fatal", 2: "serious", 3: "common", 4: "info"}
MAX_HMS = 64  # entries read from one report; the printers show a handful at most
NO_TRAY, EXTERNAL_SPOOL, AMS_HT = 255, 254, 128  # tray_now words; AMS HT units have ids from 128
REMAIN_ESTIMATED = 0x80  # home_flag bit: the AMS estimates the spools' remaining filament
MAX_AMS_UNITS, MAX_TRAYS = 16, 8  # read from one report; a printer takes four AMS units and a few AMS HT
TRAY_FIELDS = ("tray_type", "tray_color", "remain")

# report field -> (signal, unit, type)
NUMBERS: tuple[tuple[str, str, str | None, str], ...] = (
    ("nozzle_temper", "nozzle_temp", "degC", "float"),
    ("nozzle_target_temper", "nozzle_target", "degC", "float"),
    ("bed_temper", "bed_temp", "degC", "float"),
    ("bed_target_temper", "bed_target", "degC", "float"),
    ("chamber_temper", "chamber_temp", "degC", "float"),
    ("mc_percent", "progress_pct", "%", "float"),
    ("layer_num", "layer", None, "int"),
    ("total_layer_num", "total_layers", None, "int"),
)
READ_FIELDS = frozenset({f for f, *_ in NUMBERS} | {"mc_remaining_time", "gcode_state", "subtask_name",
                                                     "gcode_file", "print_error", "hms", "home_flag"})
_SETTINGS: dict[str, SignalSettings] = {"float": SignalSettings(type="float"), "int": SignalSettings(type="int"),
                                         "string": SignalSettings(type="string")}


def hms_code(attr: int, code: int) -> str:
    """One HMS entry as Bambu Lab writes it: HMS_0300_0100_0001_0007 for attr 0x03000100, code 0x00010007."""
    return f"HMS_{attr >> 16:04X}_{attr & 0xFFFF:04X}_{code >> 16:04X}_{code & 0xFFFF:04X}"


def print_error_code(n: int) -> str:
    """`print_error` as Bambu Lab writes it: 0300_400C for 50348044; "" for 0 (no error)."""
    return "" if n == 0 else f"{n >> 16:04X}_{n & 0xFFFF:04X}"


def tray_color(raw: str) -> str | None:
    """`tray_color` as the web shows colours: "F95959FF" (RRGGBBAA) -> "#F95959"; None if it is not one."""
    text = raw.strip()
    if len(text) not in (6, 8) or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return "#" + text[:6].upper()


def _id(raw: object) -> str | None:
    """A unit's or tray's `id` ("0", or 0 from some firmware) as one key; None if it is not a small number."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    try:
        n = int(raw)
    except ValueError:
        return None
    return str(n) if 0 <= n <= 255 else None


@dataclass(frozen=True, slots=True)
class Hms:
    code: str
    severity: str


@dataclass(frozen=True, slots=True)
class Bad:
    reason: str
    detail: str


class PrinterState:
    """One printer: the merged `print` object, and the job it is on (kept across reconnects)."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        self.fields: dict[str, Any] = {}
        self.job: str | None = None  # the job's name while the printer works on one
        self.hms: tuple[Hms, ...] = ()
        self.trays: dict[tuple[str, str], dict[str, Any]] = {}  # (unit id, tray id) -> its fields as last sent
        self.external: dict[str, Any] = {}  # vt_tray, the spool on the back of the printer
        self.tray_now: int | None = None  # None until a report has said which tray feeds the nozzle
        self._now = 0

    def merge(self, payload: bytes | bytearray, now_ns: int) -> tuple[list[Reading], list[Bad]]:
        """One report: the readings of the printer's whole state after it, and what could not be used."""
        self._now = now_ns
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            return [], [Bad("malformed_json", f"{type(err).__name__}: {str(err)[:120]}")]
        if not isinstance(doc, dict):
            return [], [Bad("unexpected_shape", f"a report is a JSON object, got {type(doc).__name__}")]
        report = doc.get("print")
        if report is None:
            return [], []  # answers to other commands (info, system, upgrade): nothing to read here
        if not isinstance(report, dict):
            return [], [Bad("unexpected_shape", f'"print" is {type(report).__name__}, not an object')]
        bad: list[Bad] = []
        for key, value in report.items():
            if key in READ_FIELDS:
                self.fields[key] = value
        if "hms" in report:
            self.hms = self._hms(report["hms"], bad)
        if "ams" in report:
            self._ams(report["ams"], bad)
        if "vt_tray" in report:
            if isinstance(report["vt_tray"], Mapping):
                self.external.update(self._tray_fields(report["vt_tray"], "vt_tray", bad))
            else:
                bad.append(Bad("unexpected_shape", f'"vt_tray" is {type(report["vt_tray"]).__name__}, not an object'))
        return self._readings(bad), bad

    # --- the held state as readings ----------------------------------------------------------------------
    def _r(self, signal: str, value: Value, unit: str | None = None) -> Reading:
        return Reading(self.machine, signal, value, unit, Quality.GOOD, self._now, self._now)

    def _value(self, field: str, kind: str, bad: list[Bad]) -> Value:
        if field not in self.fields:
            return None
        v = convert(self.fields[field], _SETTINGS[kind])
        if isinstance(v, BadValue):
            bad.append(Bad(v.reason, f"{field}: {str(self.fields[field])[:80]!r}"))
            del self.fields[field]  # counted once, not again with every later delta
            return None
        return v

    def _readings(self, bad: list[Bad]) -> list[Reading]:
        out: list[Reading] = []
        for field, signal, unit, kind in NUMBERS:
            v = self._value(field, kind, bad)
            if v is not None:
                out.append(self._r(signal, v, unit))
        minutes = self._value("mc_remaining_time", "int", bad)
        if isinstance(minutes, int):
            out.append(self._r("remaining_s", minutes * 60, "s"))
        name = self._job_name(bad)
        error_n = self._value("print_error", "int", bad)
        error = print_error_code(error_n) if isinstance(error_n, int) else None
        if error is not None:
            out.append(self._r("print_error", error))
        out += [self._r("hms", ",".join(h.code for h in self.hms)), self._r("hms_count", len(self.hms))]
        out += self._filament(bad)
        word = self._value("gcode_state", "string", bad)
        if not isinstance(word, str):
            return out
        gcode_state = word.strip().upper()
        state = GCODE_STATES.get(gcode_state)
        if state is None:
            bad.append(Bad("unknown_state", f"gcode_state {word[:40]!r}"))
            del self.fields["gcode_state"]
            return out
        out.append(self._r("gcode_state", gcode_state))
        faults = [f"print error {error}"] if error and error_n != CANCELLED else []
        faults += [f"{h.code} ({h.severity})" for h in self.hms if h.severity == "fatal"]
        if faults:
            state = "error"
        out.append(self._r("error", "; ".join(faults)))
        out += self._job(gcode_state, name, error_n)
        # the state first: the state engine sees the batch reading by reading, and values without it would say
        # "idle (default)" for a moment after every connect
        return [self._r("state", state), *out]

    def _job_name(self, bad: list[Bad]) -> str | None:
        for field in ("subtask_name", "gcode_file"):
            v = self._value(field, "string", bad)
            if isinstance(v, str) and v.strip():
                return v.strip()
        return None

    def _job(self, gcode_state: str, name: str | None, error_n: Value) -> list[Reading]:
        """job_event start when the printer takes up a job, and its end with the result the printer shows."""
        out: list[Reading] = []
        if gcode_state in WORKING:
            job = name or "unknown"
            if self.job is None:
                self.job = job
                out += [self._r("job_event", "start"), self._r("job_file", job)]
            elif job != self.job and name is not None:
                self.job = job  # the name arrived after the job was first seen (a P1 delta)
                out.append(self._r("job_file", job))
        elif self.job is not None:
            if gcode_state == "FAILED":
                result = "cancelled" if error_n == CANCELLED else "failed"
            elif gcode_state == "FINISH":
                result = "completed"
            else:  # back to idle without FINISH (seen after a reconnect): by the progress it had made
                progress = self.fields.get("mc_percent")
                result = "completed" if isinstance(progress, int | float) and progress >= 99 else "cancelled"
            if gcode_state == "FINISH":
                out.append(self._r("progress_pct", 100.0, "%"))
            out += [self._r("job_event", {"completed": "finish", "cancelled": "cancelled", "failed": "failed"}[
                result]), self._r("job_file", self.job), self._r("job_result", result)]
            self.job = None
        return out

    def _hms(self, raw: object, bad: list[Bad]) -> tuple[Hms, ...]:
        if not isinstance(raw, list):
            bad.append(Bad("unexpected_shape", f'"hms" is {type(raw).__name__}, not a list'))
            return self.hms
        out: list[Hms] = []
        for entry in raw[:MAX_HMS]:
            attr = entry.get("attr") if isinstance(entry, Mapping) else None
            code = entry.get("code") if isinstance(entry, Mapping) else None
            if type(attr) is not int or type(code) is not int or not 0 <= attr < 2**32 or not 0 <= code < 2**32:
                bad.append(Bad("unexpected_shape", f"hms entry {str(entry)[:80]}: needs integer attr and code"))
                continue
            out.append(Hms(hms_code(attr, code), HMS_SEVERITY.get(code >> 16, "unknown")))
        return tuple(out)

    # --- the AMS ----------------------------------------------------------------------------------------------
    def _ams(self, raw: object, bad: list[Bad]) -> None:
        if not isinstance(raw, Mapping):
            bad.append(Bad("unexpected_shape", f'"ams" is {type(raw).__name__}, not an object'))
            return
        if "tray_now" in raw:
            n = _id(raw["tray_now"])
            if n is None:
                bad.append(Bad("unexpected_shape", f"ams.tray_now {str(raw['tray_now'])[:40]!r}: not a tray number"))
            else:
                self.tray_now = int(n)
        units = raw.get("ams")
        if units is None:
            return
        if not isinstance(units, list):
            bad.append(Bad("unexpected_shape", f'"ams.ams" is {type(units).__name__}, not a list'))
            return
        for unit in units[:MAX_AMS_UNITS]:
            uid = _id(unit.get("id")) if isinstance(unit, Mapping) else None
            trays = unit.get("tray") if isinstance(unit, Mapping) else None
            if uid is None or not isinstance(trays, list | None):
                bad.append(Bad("unexpected_shape", f"ams unit {str(unit)[:80]}: needs an id and a tray list"))
                continue
            for tray in (trays or [])[:MAX_TRAYS]:
                tid = _id(tray.get("id")) if isinstance(tray, Mapping) else None
                if tid is None or not isinstance(tray, Mapping):
                    bad.append(Bad("unexpected_shape", f"ams tray {str(tray)[:80]}: needs an id"))
                    continue
                if tray.keys() == {"id"}:  # no spool in it
                    self.trays[(uid, tid)] = {}
                else:
                    self.trays.setdefault((uid, tid), {}).update(self._tray_fields(tray, f"ams {uid} tray {tid}",
                                                                                    bad))

    @staticmethod
    def _tray_fields(tray: Mapping[str, Any], where: str, bad: list[Bad]) -> dict[str, Any]:
        """The fields of one tray that are read, checked once here (a bad one is counted and left out)."""
        out: dict[str, Any] = {}
        for key in TRAY_FIELDS:
            if key not in tray:
                continue
            v = tray[key]
            if key == "remain":
                fine = type(v) is int
            else:  # tray_color may be "" with an empty tray_type (nothing on the external spool holder)
                fine = isinstance(v, str) and (key == "tray_type" or v.strip() == "" or tray_color(v) is not None)
            if fine:
                out[key] = v.strip() if isinstance(v, str) else v
            else:
                bad.append(Bad("unexpected_shape", f"{where} {key}: {str(v)[:40]!r}"))
        return out

    def _filament(self, bad: list[Bad]) -> list[Reading]:
        """The filament feeding the nozzle, once a report has said which tray that is."""
        n = self.tray_now
        if n is None:
            return []
        remain: int | None = None
        if n == NO_TRAY:
            tray: dict[str, Any] = {}
        elif n == EXTERNAL_SPOOL:  # nothing measures what is left on it
            tray = self.external
        else:
            tray = self.trays.get((str(n), "0") if n >= AMS_HT else (str(n >> 2), str(n & 3)), {})
            remain = tray.get("remain")
            flag = self._value("home_flag", "int", bad)
            if not isinstance(remain, int) or not 0 <= remain <= 100 or (
                    isinstance(flag, int) and not flag & REMAIN_ESTIMATED):
                remain = None
        kind = str(tray.get("tray_type", ""))
        color = tray_color(str(tray.get("tray_color", ""))) if kind else None
        return [self._r("filament_type", kind), self._r("filament_color", color or ""),
                self._r("filament_remain_pct", remain, "%") if remain is not None else
                Reading(self.machine, "filament_remain_pct", None, "%", Quality.BAD, self._now, self._now)]
