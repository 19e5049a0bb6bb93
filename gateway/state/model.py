"""The common machine state model: state names, what machines report and how it maps, per-kind defaults.

A machine's state is one of `offline | idle | running | paused | error | maintenance`. How it is read differs
by kind (a printer reports its state, a CNC machine its OPC UA execution state, a furnace only heater output and
setpoint, a smart plug only power); `StateSettings` says how for one machine, resolved from built-in per-kind
defaults, then `state.kinds.<kind>`, then `state.machines.<id>` of the site file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.config.operations import StateCondition, StateMapping, StateSection
from gateway.machines import MachineMeta
from gateway.reading import Quality, Value
from gateway.schema import MACHINE_STATES

OFFLINE, IDLE, RUNNING, PAUSED, ERROR, MAINTENANCE = MACHINE_STATES


def iso(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as ISO-8601 UTC with milliseconds and a Z."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class SignalValue:
    """The latest value of one signal of one machine."""

    value: Value
    unit: str | None
    ts_ns: int
    quality: Quality


@dataclass(frozen=True, slots=True)
class MachineView:
    """A machine as alert rules see it at one moment: its own state (outside maintenance mode), the signals as
    of that moment, and whether a technician has it in maintenance (its alerts are suppressed meanwhile)."""

    meta: MachineMeta
    signals: Mapping[str, SignalValue]
    state: str
    state_since_ns: int | None
    last_seen_ns: int | None
    maintenance: bool = False


def normalise(value: object) -> str:
    """Reported values compare without case, spaces, dashes or dots: 'Feed-Hold' == 'feed_hold'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    for ch in " -.":
        text = text.replace(ch, "_")
    return text


_SYNONYMS: dict[str, tuple[str, ...]] = {
    RUNNING: ("running", "run", "printing", "busy", "executing", "execute", "active", "processing", "working",
              "heating", "preparing", "prepare", "finishing", "cancelling", "in_progress", "started", "cutting",
              "machining", "firing", "producing"),
    IDLE: ("idle", "ready", "standby", "operational", "waiting", "complete", "completed", "finished", "finish",
           "done", "cancelled", "canceled", "stopped", "stop", "not_executing", "notexecuting", "cooling",
           "off", "available"),
    PAUSED: ("paused", "pause", "pausing", "interrupted", "feed_hold", "feedhold", "hold", "held", "suspended",
             "optional_stop", "program_stopped", "resuming"),
    ERROR: ("error", "fault", "faulted", "alarm", "failed", "failure", "emergency", "estop", "e_stop",
            "emergency_stop", "out_of_service", "outofservice", "aborted", "offline_after_error",
            "closed_on_error"),
    MAINTENANCE: ("maintenance", "service", "setup"),
    OFFLINE: ("offline", "not_available", "notavailable", "unavailable", "disconnected"),
}
SYNONYMS: dict[str, str] = {word: state for state, words in _SYNONYMS.items() for word in words}

# OPC UA Machinery (OPC 40001-1) MachineryItemState numbers, as a CNC driver may pass them on unnamed
MACHINERY_ITEM_STATE = {"0": OFFLINE, "1": ERROR, "2": IDLE, "3": RUNNING}


@dataclass(frozen=True, slots=True)
class StateSettings:
    """How one machine's state, jobs and counters are read (resolved; see `resolve`)."""

    state_signal: str | None = "state"
    rules: tuple[StateCondition, ...] = ()
    synonyms: Mapping[str, str] = field(default_factory=dict)  # built-in words of a kind (not configurable)
    heater_signal: str | None = "heater_pct"
    setpoint_signal: str | None = "setpoint"
    heater_busy_pct: float = 1.0
    power_signal: str | None = "power_w"
    power_busy_w: float = 50.0
    busy_after_s: float = 30.0
    idle_after_s: float = 60.0
    cycle_signals: tuple[str, ...] = ("part_count", "cycle_count")
    good_signal: str | None = "good_count"
    reject_signal: str | None = "reject_count"
    ideal_cycle_s: float | None = None
    material_signal: str | None = "filament_used_mm"
    material_unit: str = "mm"
    energy_signal: str | None = "energy_kwh"
    energy_unit: str = "kWh"
    badge_signal: str | None = "badge"
    running_hours_signal: str | None = None
    job_file_signal: str | None = "job_file"
    job_id_signal: str | None = "job_id"
    job_event_signal: str | None = "job_event"

    def map_state(self, value: object) -> str | None:
        """The machine state a reported value means, or None when it means nothing we know."""
        key = normalise(value)
        return self.synonyms.get(key) or SYNONYMS.get(key)

    def job_signals(self) -> tuple[str, ...]:
        return tuple(s for s in (self.job_file_signal, self.job_id_signal, self.job_event_signal) if s)

    def describe(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["rules"] = [r.model_dump(by_alias=True, exclude_none=True) for r in self.rules]
        out["synonyms"] = dict(self.synonyms)
        out["cycle_signals"] = list(self.cycle_signals)
        return out


KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # a furnace works while a programme runs (setpoint > 0) or its heater is on, from the first second
    "furnace": {"busy_after_s": 0.0, "idle_after_s": 30.0},
    "kiln": {"busy_after_s": 0.0, "idle_after_s": 30.0},
    "cnc": {"synonyms": MACHINERY_ITEM_STATE},
    "lathe": {"synonyms": MACHINERY_ITEM_STATE},
    "mill": {"synonyms": MACHINERY_ITEM_STATE},
    # a meter or sensor is idle while it reports: its power signal is the lab's, not its own work
    "power_meter": {"power_signal": None, "heater_signal": None, "setpoint_signal": None},
    "env_sensor": {"power_signal": None, "heater_signal": None, "setpoint_signal": None},
}

_PLAIN = ("state_signal", "heater_signal", "setpoint_signal", "heater_busy_pct", "power_signal", "power_busy_w",
          "busy_after_s", "idle_after_s", "good_signal", "reject_signal", "ideal_cycle_s", "material_signal",
          "material_unit", "energy_signal", "energy_unit", "badge_signal", "running_hours_signal",
          "job_file_signal", "job_id_signal", "job_event_signal")


def _apply(base: dict[str, Any], mapping: StateMapping) -> None:
    for name in mapping.model_fields_set:
        value = getattr(mapping, name)
        if name == "rules":
            base["rules"] = tuple(value or ())
        elif name == "cycle_signal":
            base["cycle_signals"] = (value,) if value else ()
        elif name in _PLAIN:
            base[name] = value


def resolve(kind: str, machine_id: str, section: StateSection | None = None) -> StateSettings:
    """Built-in defaults, then the kind's defaults, then `state.kinds.<kind>`, then `state.machines.<id>`."""
    base: dict[str, Any] = {f.name: getattr(StateSettings(), f.name) for f in dataclasses.fields(StateSettings)}
    base["synonyms"] = {}
    for key, value in KIND_DEFAULTS.get(kind, {}).items():
        base[key] = dict(value) if key == "synonyms" else value
    if section is not None:
        if kind in section.kinds:
            _apply(base, section.kinds[kind])
        if machine_id in section.machines:
            _apply(base, section.machines[machine_id])
    return StateSettings(**base)


def to_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
