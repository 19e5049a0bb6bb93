"""Pure state derivation: from a machine's latest signals (and a small debounce timer) to its state.

Order: a technician's maintenance mode wins; then no fresh data means offline; then the first state rule whose
conditions hold (any signal, e.g. error while alarm_code > 0); then the machine's own reported state (through
the built-in words); then heater output / setpoint; then power draw against an idle threshold, each debounced by
`busy_after_s` / `idle_after_s`; a machine that reports but shows none of these is idle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.operations import StateCondition
from gateway.reading import Quality
from gateway.state.model import IDLE, MAINTENANCE, OFFLINE, RUNNING, SignalValue, StateSettings, normalise

NS = 1_000_000_000


@dataclass(slots=True)
class WorkTimer:
    """Debounces "shows work" (heater or power): the raw value must disagree for a while before it counts."""

    busy: bool = False
    since_ns: int | None = None

    def update(self, raw: bool, now_ns: int, busy_after_s: float, idle_after_s: float) -> bool:
        if raw == self.busy:
            self.since_ns = None
            return self.busy
        if self.since_ns is None:
            self.since_ns = now_ns
        wait_s = busy_after_s if raw else idle_after_s
        if now_ns - self.since_ns >= wait_s * NS:
            self.busy, self.since_ns = raw, None
        return self.busy


def number(signals: Mapping[str, SignalValue], name: str | None) -> float | None:
    """The latest usable number of a signal (bools count as 0/1), or None."""
    if not name:
        return None
    sv = signals.get(name)
    if sv is None or sv.quality is Quality.BAD or sv.value is None or isinstance(sv.value, str):
        return None
    return float(sv.value)


def holds(rule: StateCondition, signals: Mapping[str, SignalValue]) -> bool:
    """True when the rule's signal has a usable latest value that meets every condition of the rule."""
    sv = signals.get(rule.signal)
    if sv is None or sv.quality is Quality.BAD or sv.value is None:
        return False
    if rule.equals is not None and normalise(sv.value) != normalise(rule.equals):
        return False
    if rule.in_ is not None and normalise(sv.value) not in {normalise(v) for v in rule.in_}:
        return False
    if rule.above is not None or rule.below is not None:
        try:
            x = float(sv.value)
        except ValueError:
            return False  # a text value is neither above nor below a number
        if (rule.above is not None and not x > rule.above) or (rule.below is not None and not x < rule.below):
            return False
    return True


def reported_state(settings: StateSettings, signals: Mapping[str, SignalValue]) -> str | None:
    if not settings.state_signal:
        return None
    sv = signals.get(settings.state_signal)
    if sv is None or sv.quality is Quality.BAD or sv.value is None or sv.value == "":
        return None
    return settings.map_state(sv.value)


def shows_work(settings: StateSettings, signals: Mapping[str, SignalValue]) -> tuple[bool, str] | None:
    """(working, basis) from heater/setpoint or power, or None when the machine has none of them."""
    heater = number(signals, settings.heater_signal)
    setpoint = number(signals, settings.setpoint_signal)
    if heater is not None or setpoint is not None:
        working = (heater is not None and heater > settings.heater_busy_pct) or (setpoint is not None and setpoint > 0)
        return working, "heater"
    power = number(signals, settings.power_signal)
    if power is not None:
        return power > settings.power_busy_w, "power"
    return None


def derive(settings: StateSettings, signals: Mapping[str, SignalValue], *, now_ns: int, timer: WorkTimer,
           maintenance: bool, fresh: bool) -> tuple[str, str]:
    """(state, basis) where basis says what decided it: maintenance, stale, rule, reported, heater, power,
    default."""
    if maintenance:
        return MAINTENANCE, "maintenance"
    if not fresh:
        return OFFLINE, "stale"
    for rule in settings.rules:
        if holds(rule, signals):
            return rule.state, "rule"
    reported = reported_state(settings, signals)
    if reported is not None:
        return reported, "reported"
    work = shows_work(settings, signals)
    if work is None:
        return IDLE, "default"
    raw, basis = work
    busy = timer.update(raw, now_ns, settings.busy_after_s, settings.idle_after_s)
    return (RUNNING if busy else IDLE), basis
