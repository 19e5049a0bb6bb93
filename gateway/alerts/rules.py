"""Alert rules compiled for evaluation: pure functions of a machine's latest signals, state and recent samples.

`evaluate` answers True (condition holds), False (it does not) or None (cannot tell: no data, or the machine is
offline and its values are stale — a stale value is never taken as current). `Debounce` turns that into
raise/clear decisions with on/off delays; hysteresis lives in the threshold check itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.config.operations import (
    AlertRule,
    Check,
    ConditionRule,
    OfflineRule,
    RateRule,
    StateRule,
    ThresholdRule,
)
from gateway.machines import MachineMeta
from gateway.reading import Quality, Reading, Value
from gateway.state.derive import NS, number
from gateway.state.model import OFFLINE, MachineView, SignalValue, normalise

Decision = Literal["raise", "clear"] | None


@dataclass(slots=True)
class Outcome:
    holds: bool | None
    value: Value = None
    limit: float | None = None
    unit: str | None = None


@dataclass(slots=True)
class Memory:
    """What one rule remembers about one machine between evaluations."""

    active: bool = False
    raw: bool = False
    pending_since_ns: int | None = None
    samples: deque[tuple[int, float]] = field(default_factory=deque)


def check_holds(check: Check, signals: Mapping[str, SignalValue]) -> bool | None:
    sv = signals.get(check.signal)
    if sv is None or sv.quality is Quality.BAD or sv.value is None:
        return None
    if check.present is not None:
        return (str(sv.value).strip() != "") == check.present
    if check.equals is not None:
        want, got = check.equals, sv.value
        if isinstance(want, bool) or isinstance(got, bool):
            return normalise(got) in (("true", "1", "on", "yes") if want is True or normalise(want) == "true"
                                      else ("false", "0", "off", "no"))
        if isinstance(want, float | int) and not isinstance(got, str):
            return float(got) == float(want)
        return normalise(got) == normalise(want)
    x = number(signals, check.signal)
    if x is None:
        return None
    if check.above is not None and not x > check.above:
        return False
    return not (check.below is not None and not x < check.below)


class CompiledRule:
    def __init__(self, cfg: AlertRule) -> None:
        self.cfg = cfg
        self.id = cfg.id

    def applies(self, meta: MachineMeta) -> bool:
        c = self.cfg
        if not (c.machines or c.kinds or c.labs):
            return True
        return meta.id in c.machines or meta.kind in c.kinds or (meta.lab is not None and meta.lab in c.labs)

    @property
    def signal(self) -> str | None:
        return self.cfg.signal if isinstance(self.cfg, ThresholdRule | RateRule) else None

    def feed(self, mem: Memory, readings: Iterable[Reading]) -> None:
        """Keep the samples a rate rule needs (others keep nothing)."""
        if not isinstance(self.cfg, RateRule):
            return
        window_ns = int(self.cfg.window_s * NS)
        for r in readings:
            if r.signal == self.cfg.signal and r.quality is not Quality.BAD and isinstance(r.value, int | float):
                mem.samples.append((r.source_ns, float(r.value)))
        if mem.samples:
            newest = mem.samples[-1][0]
            while len(mem.samples) > 2 and mem.samples[1][0] <= newest - window_ns:
                mem.samples.popleft()

    def evaluate(self, m: MachineView, mem: Memory, now_ns: int) -> Outcome:
        c = self.cfg
        if isinstance(c, OfflineRule):
            if m.last_seen_ns is None:
                return Outcome(None)
            return Outcome(m.state == OFFLINE, value=m.state)
        if isinstance(c, StateRule):
            return Outcome(m.state in c.states and self._when(m), value=m.state)
        if m.state == OFFLINE:
            return Outcome(None)
        if c.states and m.state not in c.states:
            return Outcome(False)
        when = self._when(m)
        if isinstance(c, ConditionRule):
            first = m.signals.get(c.when[0].signal)
            return Outcome(when, value=first.value if first else None, unit=first.unit if first else None)
        if isinstance(c, ThresholdRule):
            return self._threshold(c, m, mem, when)
        assert isinstance(c, RateRule)
        return self._rate(c, m, mem, when)

    def _when(self, m: MachineView) -> bool:
        return all(check_holds(ch, m.signals) is True for ch in self.cfg.when)

    def _threshold(self, c: ThresholdRule, m: MachineView, mem: Memory, when: bool) -> Outcome:
        x = number(m.signals, c.signal)
        if x is None:
            return Outcome(None)
        unit = m.signals[c.signal].unit
        value: float = x
        if c.relative_to:
            ref = number(m.signals, c.relative_to)
            if ref is None:
                return Outcome(None)
            x -= ref
        if c.above is not None:
            limit = c.above - (c.hysteresis if mem.raw else 0.0)
            holds = x > limit
            shown = c.above
        else:
            assert c.below is not None
            limit = c.below + (c.hysteresis if mem.raw else 0.0)
            holds = x < limit
            shown = c.below
        holds = holds and when
        mem.raw = holds
        if c.relative_to:
            ref_value = number(m.signals, c.relative_to) or 0.0
            shown += ref_value
        return Outcome(holds, value=value, limit=shown, unit=unit)

    def _rate(self, c: RateRule, m: MachineView, mem: Memory, when: bool) -> Outcome:
        if len(mem.samples) < 2:
            return Outcome(None)
        (t0, v0), (t1, v1) = mem.samples[0], mem.samples[-1]
        if (t1 - t0) < c.window_s * NS / 2:
            return Outcome(None)
        per_min = (v1 - v0) / ((t1 - t0) / NS) * 60.0
        holds = (c.rise_per_min is not None and per_min > c.rise_per_min) or (
            c.fall_per_min is not None and -per_min > c.fall_per_min)
        limit = c.rise_per_min if c.rise_per_min is not None and per_min >= 0 else c.fall_per_min
        unit = m.signals[c.signal].unit if c.signal in m.signals else None
        return Outcome(holds and when, value=round(per_min, 3), limit=limit, unit=f"{unit or ''}/min")


def debounce(rule: AlertRule, mem: Memory, holds: bool | None, now_ns: int) -> Decision:
    """Apply on/off delays: 'raise' or 'clear' when the debounced condition changes, else None."""
    if holds is None:
        mem.pending_since_ns = None
        return None
    if holds == mem.active:
        mem.pending_since_ns = None
        return None
    if mem.pending_since_ns is None:
        mem.pending_since_ns = now_ns
    delay = rule.on_delay_s if holds else rule.off_delay_s
    if now_ns - mem.pending_since_ns >= delay * NS:
        mem.active, mem.pending_since_ns = holds, None
        return "raise" if holds else "clear"
    return None


def compile_rules(rules: Sequence[AlertRule]) -> list[CompiledRule]:
    return [CompiledRule(r) for r in rules]
