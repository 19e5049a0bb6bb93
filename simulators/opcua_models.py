"""A believable, deterministic CNC mill for the OPC UA simulator (pure: no I/O, no clock).

Job cycle: set-up (NotExecuting) -> program runs (Executing) of several parts each -> idle gap; now and then an
alarm stops the program for a while, and on rare occasions the machine is taken OutOfService for maintenance.
Execution states follow OPC UA for Machinery (MachineryItemState): NotAvailable, OutOfService, NotExecuting,
Executing.
"""

from __future__ import annotations

import math

from simulators.dynamics import Model, Signal, SignalValue, _lag

EXECUTION_STATES = ("NotAvailable", "OutOfService", "NotExecuting", "Executing")
PROGRAMS = ("O1001_BRACKET.NC", "O2040_HOUSING.NC", "O3115_FLANGE.NC", "O4002_GEAR_BLANK.NC")
ALARMS = (1010, 2045, 3002)  # spindle overload, axis following error, coolant low


class Cnc(Model):
    """3-axis CNC mill: spindle speed/load, feed rate, program, part counter, execution state, alarm code."""

    kind = "cnc"
    max_dt_s = 0.5

    def __init__(self, *, seed: int, start_offset_s: float = 0.0, cycle_s: float = 240.0,
                 parts_per_job: int = 5) -> None:
        super().__init__(seed=seed)
        self.start_offset_s = start_offset_s
        self.cycle_s = cycle_s
        self.parts_per_job = parts_per_job
        self.setup_s = 0.15 * cycle_s
        self.run_s = 0.7 * cycle_s
        self.part_s = self.run_s / parts_per_job
        self._t0 = 0.0
        self.program = PROGRAMS[0]
        self.parts = 0
        self.speed_rpm = 0.0
        self.load_pct = 0.0
        self.feed_mm_min = 0.0
        self.alarm = 0
        self._alarm_until = 0.0
        self._service_until = 0.0
        self._part_t = 0.0
        self._job = -1

    def signals(self) -> dict[str, Signal]:
        return {
            "spindle_speed": Signal("rpm", "float"),
            "spindle_load": Signal("%", "float"),
            "feed_rate": Signal("mm/min", "float"),
            "program": Signal(None, "string"),
            "part_count": Signal("count", "int"),
            "execution": Signal(None, "string"),
            "alarm_code": Signal(None, "int"),
        }

    def phase(self, t_s: float) -> str:
        """The execution state at t_s."""
        if t_s < self._service_until:
            return "OutOfService"
        if t_s < self._alarm_until:
            return "NotExecuting"
        e = (t_s - self._t0 + self.start_offset_s) % self.cycle_s
        if self.setup_s <= e < self.setup_s + self.run_s:
            return "Executing"
        return "NotExecuting"

    def _begin(self, t_s: float) -> None:
        self._t0 = t_s
        self.parts = self.rng.randrange(100, 2000)
        self._job = int((t_s + self.start_offset_s) // self.cycle_s)
        self.program = PROGRAMS[self._job % len(PROGRAMS)]

    def _advance(self, t_s: float, dt_s: float) -> None:
        job = int((t_s - self._t0 + self.start_offset_s) // self.cycle_s)
        if job != self._job:
            self._job = job
            self.program = PROGRAMS[job % len(PROGRAMS)]
            if self.rng.random() < 0.03:
                self._service_until = t_s + self.rng.uniform(0.3, 0.6) * self.cycle_s
        state = self.phase(t_s)
        if state == "Executing":
            if self.rng.random() < dt_s / (12 * self.cycle_s):
                self.alarm = self.rng.choice(ALARMS)
                self._alarm_until = t_s + self.rng.uniform(20.0, 60.0)
                state = "NotExecuting"
        elif t_s >= self._alarm_until:
            self.alarm = 0
        cutting = state == "Executing"
        if cutting:
            self._part_t += dt_s
            if self._part_t >= self.part_s:
                self._part_t -= self.part_s
                self.parts += 1
        target_speed = 8000.0 + 2000.0 * math.sin(self._part_t / self.part_s * math.pi) if cutting else 0.0
        self.speed_rpm = _lag(self.speed_rpm, target_speed, 1.5, dt_s)
        target_load = 35.0 + 25.0 * abs(math.sin(self._part_t / 7.0)) if cutting else 2.0
        self.load_pct = _lag(self.load_pct, target_load, 2.0, dt_s)
        self.feed_mm_min = 1200.0 + 400.0 * math.cos(self._part_t / 11.0) if cutting else 0.0

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        state = self.phase(t_s)
        noise = self.rng.gauss
        return {
            "spindle_speed": round(max(0.0, self.speed_rpm + (noise(0, 5.0) if self.speed_rpm > 1 else 0.0)), 1),
            "spindle_load": round(max(0.0, self.load_pct + noise(0, 0.8)), 2),
            "feed_rate": round(self.feed_mm_min, 1),
            "program": self.program,
            "part_count": self.parts,
            "execution": state,
            "alarm_code": self.alarm,
        }
