"""Usage counters of one machine: running time, cycles (parts or jobs), material used, energy (from its meter).

Counters are cumulative since the gateway first saw the machine and survive restarts (the store keeps them, and
the last raw value of every counted signal, so a reading after a restart adds only what is new). Machine counters
that restart (a part counter reset, filament used restarting at each job) count from zero again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.reading import Quality, Reading
from gateway.state.model import RUNNING, StateSettings

NS = 1_000_000_000
COUNTERS = ("running_s", "cycles", "material_m", "jobs", "energy_kwh")


@dataclass(slots=True)
class Production:
    """Parts made in a moment: `good` is None when the machine does not report quality."""

    ts_ns: int
    total: float
    good: float | None


@dataclass(slots=True)
class UsageMeter:
    settings: StateSettings
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0.0))
    raw: dict[str, float] = field(default_factory=dict)
    has_cycle_signal: bool = False
    accrued_to_ns: int | None = None

    def _delta(self, name: str, value: float) -> float:
        """What a cumulative signal added since its last value (a drop means it restarted from zero)."""
        last = self.raw.get(name)
        self.raw[name] = value
        if last is None:
            return 0.0
        return value - last if value >= last else value

    def on_reading(self, r: Reading) -> tuple[float, float, Production | None]:
        """(material in metres added, energy in kWh added, parts made) by one reading."""
        s = self.settings
        if r.quality is Quality.BAD or r.value is None or isinstance(r.value, str):
            return 0.0, 0.0, None
        v = float(r.value)
        if r.signal == s.material_signal:
            d = self._delta(r.signal, v)
            metres = d / 1000.0 if s.material_unit == "mm" else d
            self.counters["material_m"] += metres
            return metres, 0.0, None
        if r.signal == s.energy_signal:
            d = self._delta(r.signal, v)
            kwh = d / 1000.0 if s.energy_unit == "Wh" else d
            self.counters["energy_kwh"] += kwh
            return 0.0, kwh, None
        if r.signal in s.cycle_signals:
            self.has_cycle_signal = True
            d = self._delta(r.signal, v)
            if d <= 0:
                return 0.0, 0.0, None
            self.counters["cycles"] += d
            quality_known = bool(s.reject_signal and s.reject_signal in self.raw) or bool(
                s.good_signal and s.good_signal in self.raw)
            good = d if quality_known and not (s.good_signal and s.good_signal in self.raw) else None
            return 0.0, 0.0, Production(r.source_ns, d, good)
        if r.signal == s.good_signal:
            d = self._delta(r.signal, v)
            return 0.0, 0.0, Production(r.source_ns, 0.0, d) if d > 0 else None
        if r.signal == s.reject_signal:
            d = self._delta(r.signal, v)
            return 0.0, 0.0, Production(r.source_ns, 0.0, -d) if d > 0 else None
        if r.signal == s.running_hours_signal:
            d = self._delta(r.signal, v)
            self.counters["running_s"] += d * 3600.0
        return 0.0, 0.0, None

    def accrue(self, state: str, now_ns: int) -> None:
        """Add running time up to now (when the machine reports no hours counter of its own)."""
        if self.accrued_to_ns is not None and state == RUNNING and now_ns > self.accrued_to_ns \
                and not (self.settings.running_hours_signal and self.settings.running_hours_signal in self.raw):
            self.counters["running_s"] += (now_ns - self.accrued_to_ns) / NS
        self.accrued_to_ns = now_ns

    def on_job_end(self, result: str, ts_ns: int) -> Production | None:
        """A finished job is a cycle of a machine without a part counter (a printer); a failed one a reject."""
        self.counters["jobs"] += 1
        if self.has_cycle_signal or result == "cancelled":
            return None
        self.counters["cycles"] += 1
        return Production(ts_ns, 1.0, 1.0 if result == "completed" else 0.0)

    def snapshot(self) -> dict[str, float]:
        return {**self.counters, **{f"raw:{k}": v for k, v in self.raw.items()},
                "has_cycle_signal": 1.0 if self.has_cycle_signal else 0.0}

    def restore(self, saved: dict[str, float]) -> None:
        for k, v in saved.items():
            if k.startswith("raw:"):
                self.raw[k[4:]] = v
            elif k == "has_cycle_signal":
                self.has_cycle_signal = v > 0
            elif k in self.counters:
                self.counters[k] = v
