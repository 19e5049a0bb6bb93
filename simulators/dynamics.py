"""Believable, deterministic physics of the virtual lab's machines.

Every model is pure: no I/O, no clock, no global random state. Time is passed in as float seconds (Unix
time when a model needs the local time of day, any origin otherwise) and each model integrates its state in
short sub-steps, so the output depends only on the seed and the sequence of times stepped.
"""

from __future__ import annotations

import abc
import datetime as dt
import math
import random
import zoneinfo
from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

SignalType = Literal["float", "int", "bool", "string"]
SignalValue = float | int | bool | str


class Signal(NamedTuple):
    """Unit (canonical spelling of gateway.units, or None) and value type of one signal."""

    unit: str | None
    type: SignalType


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _lag(x: float, target: float, tau_s: float, dt_s: float) -> float:
    """Exact first-order lag step: stable for any dt."""
    return target + (x - target) * math.exp(-dt_s / tau_s)


class Model(abc.ABC):
    """A simulated machine: `step(t_s)` advances the state to t_s and returns every signal's value."""

    kind: ClassVar[str]
    max_dt_s: ClassVar[float] = 1.0

    def __init__(self, *, seed: int) -> None:
        self.rng = random.Random(seed)
        self._t: float | None = None

    @abc.abstractmethod
    def signals(self) -> dict[str, Signal]:
        """Signal name -> (unit, type) of everything `step` returns."""

    def step(self, t_s: float) -> dict[str, SignalValue]:
        """Advance to t_s (a time before the last one is treated as no time passing) and read all signals."""
        if self._t is None:
            self._begin(t_s)
            self._t = t_s
        elif t_s > self._t:
            n = math.ceil((t_s - self._t) / self.max_dt_s)
            h = (t_s - self._t) / n
            start = self._t
            for i in range(1, n + 1):
                self._advance(start + i * h, h)
            self._t = t_s
        return self._read(self._t)

    @abc.abstractmethod
    def _begin(self, t_s: float) -> None:
        """Set the initial state at the first step."""

    @abc.abstractmethod
    def _advance(self, t_s: float, dt_s: float) -> None:
        """Integrate one sub-step ending at t_s."""

    @abc.abstractmethod
    def _read(self, t_s: float) -> dict[str, SignalValue]:
        """Current signal values, with measurement noise."""


# --- furnace ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One programme segment: ramp or cool at a rate to a target, or hold the last target for some minutes."""

    name: str
    kind: Literal["ramp", "hold", "cool"]
    target_c: float = 0.0
    rate_c_per_min: float = 0.0
    minutes: float = 0.0


DEFAULT_FURNACE_PROGRAMME = (
    Segment("ramp-1", "ramp", target_c=600, rate_c_per_min=15),
    Segment("hold-1", "hold", minutes=15),
    Segment("ramp-2", "ramp", target_c=1000, rate_c_per_min=20),
    Segment("hold-2", "hold", minutes=30),
    Segment("cool", "cool", target_c=200, rate_c_per_min=10),
)


@dataclass(frozen=True, slots=True)
class _Span:
    segment: Segment
    start_s: float
    end_s: float
    from_c: float
    to_c: float


class Furnace(Model):
    """Lab muffle furnace (up to 1200 degC) running a looping firing programme.

    Plant: first-order chamber (loss time constant `tau_s`; 100 % heater holds ambient + `max_rise_c`), a
    thermocouple lag, a PI controller with saturation and conditional-integration anti-windup (a small
    overshoot after saturated ramps). Between runs the furnace idles for `idle_minutes`; the door opens now
    and then once the chamber is below 200 degC, which cuts the heater and speeds cooling. `setpoint` is 0
    when idle.
    """

    kind = "furnace"
    door_safe_c = 200.0

    def __init__(
        self,
        *,
        seed: int,
        programme: tuple[Segment, ...] = DEFAULT_FURNACE_PROGRAMME,
        idle_minutes: float = 20.0,
        start_offset_s: float = 0.0,
        ambient_c: float = 25.0,
        tau_s: float = 1500.0,
        max_rise_c: float = 1300.0,
        sensor_tau_s: float = 20.0,
        kp: float = 3.0,
        ki: float = 0.01,
    ) -> None:
        super().__init__(seed=seed)
        if not programme:
            raise ValueError("a furnace programme needs at least one segment")
        self.ambient_c = ambient_c
        self.tau_s = tau_s
        self.max_rise_c = max_rise_c
        self.sensor_tau_s = sensor_tau_s
        self.kp, self.ki = kp, ki
        self.start_offset_s = start_offset_s
        self.spans = self._schedule(programme)
        self.run_s = self.spans[-1].end_s
        self.cycle_s = self.run_s + idle_minutes * 60.0
        self._t0 = 0.0
        self.chamber_c = self.sensor_c = ambient_c
        self.integral = 0.0
        self.heater_pct = 0.0
        self.door_open = False
        self._door_close_at = 0.0

    def _schedule(self, programme: tuple[Segment, ...]) -> list[_Span]:
        spans: list[_Span] = []
        t, sp = 0.0, self.ambient_c
        for seg in programme:
            if seg.kind == "hold":
                duration, to = seg.minutes * 60.0, sp
            else:
                if seg.rate_c_per_min <= 0:
                    raise ValueError(f"segment {seg.name!r}: rate_c_per_min must be positive")
                duration, to = abs(seg.target_c - sp) / seg.rate_c_per_min * 60.0, seg.target_c
            spans.append(_Span(seg, t, t + duration, sp, to))
            t, sp = t + duration, to
        return spans

    def signals(self) -> dict[str, Signal]:
        return {
            "temperature": Signal("degC", "float"),
            "setpoint": Signal("degC", "float"),
            "heater_pct": Signal("%", "float"),
            "door_open": Signal(None, "bool"),
            "programme": Signal(None, "string"),
            "state": Signal(None, "string"),
        }

    def elapsed(self, t_s: float) -> float:
        """Seconds into the current programme cycle."""
        return (t_s - self._t0 + self.start_offset_s) % self.cycle_s

    def segment_at(self, elapsed_s: float) -> tuple[str, float]:
        """(segment name, setpoint) at this point of the cycle; ("none", 0) while idle."""
        for span in self.spans:
            if elapsed_s < span.end_s:
                if span.segment.kind == "hold":
                    return span.segment.name, span.to_c
                f = (elapsed_s - span.start_s) / (span.end_s - span.start_s)
                return span.segment.name, span.from_c + (span.to_c - span.from_c) * f
        return "none", 0.0

    def _begin(self, t_s: float) -> None:
        self._t0 = t_s
        e = self.elapsed(t_s)
        name, sp = self.segment_at(e)
        if name == "none":
            cooled = math.exp(-(e - self.run_s) / self.tau_s)
            self.chamber_c = self.ambient_c + (self.spans[-1].to_c - self.ambient_c) * cooled
        else:
            self.chamber_c = max(sp, self.ambient_c)
            self.integral = _clamp((self.chamber_c - self.ambient_c) / self.max_rise_c * 100.0, 0.0, 100.0)
        self.sensor_c = self.chamber_c

    def _advance(self, t_s: float, dt_s: float) -> None:
        name, sp = self.segment_at(self.elapsed(t_s))
        running = name != "none"
        if running:
            self.door_open = False
            err = sp - self.sensor_c
            out = self.kp * err + self.integral
            if not (out >= 100.0 and err > 0) and not (out <= 0.0 and err < 0):
                self.integral = _clamp(self.integral + self.ki * err * dt_s, 0.0, 100.0)
            self.heater_pct = _clamp(self.kp * err + self.integral, 0.0, 100.0)
        else:
            self.integral = self.heater_pct = 0.0
            self._move_door(t_s, dt_s)
        loss_tau = self.tau_s / (4.0 if self.door_open else 1.0)
        target = self.ambient_c + self.max_rise_c * self.heater_pct / 100.0 * loss_tau / self.tau_s
        self.chamber_c = _lag(self.chamber_c, target, loss_tau, dt_s)
        self.sensor_c = _lag(self.sensor_c, self.chamber_c, self.sensor_tau_s, dt_s)

    def _move_door(self, t_s: float, dt_s: float) -> None:
        if self.door_open:
            self.door_open = t_s < self._door_close_at
        elif self.chamber_c < self.door_safe_c and self.rng.random() < dt_s / 480.0:
            self.door_open = True
            self._door_close_at = t_s + self.rng.uniform(60.0, 240.0)

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        name, sp = self.segment_at(self.elapsed(t_s))
        return {
            "temperature": round(self.sensor_c + self.rng.gauss(0.0, 0.2), 1),
            "setpoint": round(float(sp), 1),
            "heater_pct": round(self.heater_pct, 1),
            "door_open": self.door_open,
            "programme": name,
            "state": "idle" if name == "none" else "running",
        }


# --- environmental (climate) chamber -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChamberStep:
    """One step of a chamber cycle; None setpoints mean uncontrolled (both None: chamber off, idle)."""

    name: str
    minutes: float
    temperature_c: float | None
    humidity_pct: float | None


DEFAULT_CHAMBER_CYCLE = (
    ChamberStep("conditioning", 20, 23.0, 50.0),
    ChamberStep("damp-heat", 40, 40.0, 93.0),
    ChamberStep("cold", 45, -10.0, None),
    ChamberStep("recovery", 20, 23.0, 50.0),
    ChamberStep("standby", 15, None, None),
)


class Chamber(Model):
    """Climate chamber cycling temperature and humidity setpoints with lag, heater and an on/off compressor.

    The compressor switches with a hysteresis of +-`band_c` around the setpoint, which gives the saw-tooth of
    a real chamber holding a cold step. Setpoints read 0 when not controlled.
    """

    kind = "chamber"

    def __init__(
        self,
        *,
        seed: int,
        cycle: tuple[ChamberStep, ...] = DEFAULT_CHAMBER_CYCLE,
        start_offset_s: float = 0.0,
        ambient_c: float = 23.0,
        ambient_rh: float = 35.0,
        heat_k_per_min: float = 4.0,
        cool_k_per_min: float = 4.0,
        band_c: float = 0.8,
    ) -> None:
        super().__init__(seed=seed)
        if not cycle:
            raise ValueError("a chamber cycle needs at least one step")
        self.cycle = cycle
        self.cycle_s = sum(s.minutes for s in cycle) * 60.0
        self.start_offset_s = start_offset_s
        self.ambient_c, self.ambient_rh = ambient_c, ambient_rh
        self.heat_k_s = heat_k_per_min / 60.0
        self.cool_k_s = cool_k_per_min / 60.0
        self.band_c = band_c
        self._t0 = 0.0
        self.temperature_c = ambient_c
        self.humidity_pct = ambient_rh
        self.compressor_on = False

    def signals(self) -> dict[str, Signal]:
        return {
            "temperature": Signal("degC", "float"),
            "humidity": Signal("%RH", "float"),
            "temperature_setpoint": Signal("degC", "float"),
            "humidity_setpoint": Signal("%RH", "float"),
            "compressor_on": Signal(None, "bool"),
            "step": Signal(None, "string"),
            "state": Signal(None, "string"),
        }

    def step_at(self, t_s: float) -> ChamberStep:
        e = (t_s - self._t0 + self.start_offset_s) % self.cycle_s
        for s in self.cycle:
            e -= s.minutes * 60.0
            if e < 0:
                return s
        return self.cycle[-1]

    def _begin(self, t_s: float) -> None:
        self._t0 = t_s
        s = self.step_at(t_s)
        self.temperature_c = self.ambient_c if s.temperature_c is None else s.temperature_c
        self.humidity_pct = self.ambient_rh if s.humidity_pct is None else s.humidity_pct

    def _advance(self, t_s: float, dt_s: float) -> None:
        s = self.step_at(t_s)
        leak = (self.ambient_c - self.temperature_c) / 1200.0
        heat = cool = 0.0
        if s.temperature_c is None:
            self.compressor_on = False
        else:
            sp = s.temperature_c
            if self.compressor_on and self.temperature_c < sp - self.band_c:
                self.compressor_on = False
            elif not self.compressor_on and self.temperature_c > sp + self.band_c:
                self.compressor_on = True
            cool = self.cool_k_s if self.compressor_on else 0.0
            if not self.compressor_on:
                heat = _clamp((sp - self.temperature_c) / 60.0 - leak, 0.0, self.heat_k_s)
        self.temperature_c += (leak + heat - cool) * dt_s
        rh_target = self.ambient_rh if s.humidity_pct is None else s.humidity_pct
        self.humidity_pct = _lag(self.humidity_pct, rh_target, 180.0 if s.humidity_pct else 900.0, dt_s)

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        s = self.step_at(t_s)
        return {
            "temperature": round(self.temperature_c + self.rng.gauss(0.0, 0.1), 2),
            "humidity": round(_clamp(self.humidity_pct + self.rng.gauss(0.0, 0.5), 0.0, 100.0), 1),
            "temperature_setpoint": float(s.temperature_c or 0.0),
            "humidity_setpoint": float(s.humidity_pct or 0.0),
            "compressor_on": self.compressor_on,
            "step": s.name,
            "state": "idle" if s.temperature_c is None else "running",
        }


# --- lab air sensor -----------------------------------------------------------------------------------------


class EnvSensor(Model):
    """Lab air: CO2 from a mass balance of occupants and ventilation, temperature, humidity and PM2.5.

    Occupancy follows working hours (Mon-Fri 09:00-18:00 with a lunch dip) in the site's time zone, so `t_s`
    must be Unix time. Ventilation runs harder by day; at night CO2 decays slowly towards outdoor air.
    """

    kind = "env_sensor"
    max_dt_s = 5.0

    def __init__(
        self,
        *,
        seed: int,
        timezone: str = "Asia/Almaty",
        room_m3: float = 250.0,
        max_people: int = 14,
        outdoor_co2_ppm: float = 420.0,
    ) -> None:
        super().__init__(seed=seed)
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.room_m3 = room_m3
        self.max_people = max_people
        self.outdoor_co2_ppm = outdoor_co2_ppm
        self.people = 0
        self.co2_ppm = outdoor_co2_ppm
        self.temperature_c = 20.0
        self.humidity_pct = 32.0
        self.pm25 = 6.0
        self.dust_spike = 0.0

    def signals(self) -> dict[str, Signal]:
        return {
            "temperature": Signal("degC", "float"),
            "humidity": Signal("%RH", "float"),
            "co2_ppm": Signal("ppm", "float"),
            "pm2_5": Signal("ug/m3", "float"),
        }

    def working(self, t_s: float) -> bool:
        local = dt.datetime.fromtimestamp(t_s, self.tz)
        return local.weekday() < 5 and 9 <= local.hour < 18

    def _expected_people(self, t_s: float) -> float:
        if not self.working(t_s):
            return 0.0
        lunch = dt.datetime.fromtimestamp(t_s, self.tz).hour == 13
        return self.max_people * (0.35 if lunch else 0.7)

    def _ach_per_s(self, t_s: float) -> float:
        return (1.5 if self.working(t_s) else 0.3) / 3600.0

    def _co2_source(self) -> float:
        """ppm/s added by the people in the room (0.3 l/min of CO2 each)."""
        return self.people * 5e-6 / self.room_m3 * 1e6

    def _begin(self, t_s: float) -> None:
        self.people = round(self._expected_people(t_s))
        self.co2_ppm = self.outdoor_co2_ppm + self._co2_source() / self._ach_per_s(t_s)
        self.temperature_c = 20.5 + 0.12 * self.people
        self.humidity_pct = 30.0 + 0.6 * self.people
        self.pm25 = 5.0 + 0.8 * self.people

    def _advance(self, t_s: float, dt_s: float) -> None:
        expected = self._expected_people(t_s)
        if self.rng.random() < dt_s / 300.0:
            people = round(self.rng.gauss(expected, 1.5 if expected else 0.3))
            self.people = max(0, min(self.max_people, people))
        ach = self._ach_per_s(t_s)
        self.co2_ppm += (self._co2_source() - ach * (self.co2_ppm - self.outdoor_co2_ppm)) * dt_s
        heating = 20.5 if self.working(t_s) else 19.0
        self.temperature_c = _lag(self.temperature_c, heating + 0.12 * self.people, 3600.0, dt_s)
        self.humidity_pct = _lag(self.humidity_pct, 30.0 + 0.6 * self.people, 1800.0, dt_s)
        if self.people and self.rng.random() < dt_s / 7200.0:
            self.dust_spike += self.rng.uniform(30.0, 80.0)
        self.dust_spike = _lag(self.dust_spike, 0.0, 600.0, dt_s)
        self.pm25 = _lag(self.pm25, 5.0 + 0.8 * self.people + self.dust_spike, 120.0, dt_s)

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        return {
            "temperature": round(self.temperature_c + self.rng.gauss(0.0, 0.05), 2),
            "humidity": round(_clamp(self.humidity_pct + self.rng.gauss(0.0, 0.3), 0.0, 100.0), 1),
            "co2_ppm": round(max(0.0, self.co2_ppm + self.rng.gauss(0.0, 5.0)), 0),
            "pm2_5": round(max(0.0, self.pm25 + self.rng.gauss(0.0, 0.5)), 1),
        }


# --- power meter --------------------------------------------------------------------------------------------


class PowerMeter(Model):
    """Energy meter on one machine's supply: idle base load plus bursts while the machine runs.

    Run and idle periods are exponentially distributed; power while running wanders around 85 % of `load_w`.
    Voltage drifts around the nominal value and sags a little under load; `energy_kwh` is the integral of
    power and never decreases. With `phases=3` the meter also reports per-phase voltage and current.
    """

    kind = "power_meter"

    def __init__(
        self,
        *,
        seed: int,
        idle_w: float = 120.0,
        load_w: float = 2500.0,
        run_minutes: float = 12.0,
        idle_minutes: float = 6.0,
        phases: Literal[1, 3] = 1,
        nominal_v: float = 230.0,
        initial_kwh: float | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        self.idle_w, self.load_w = idle_w, load_w
        self.run_s, self.idle_s = run_minutes * 60.0, idle_minutes * 60.0
        self.phases = phases
        self.nominal_v = nominal_v
        self.energy_kwh = self.rng.uniform(800.0, 6000.0) if initial_kwh is None else initial_kwh
        self.running = False
        self.load = 0.85
        self.drift_v = [0.0] * phases
        self.power_w = idle_w

    def signals(self) -> dict[str, Signal]:
        sig = {
            "power_w": Signal("W", "float"),
            "voltage_v": Signal("V", "float"),
            "current_a": Signal("A", "float"),
            "power_factor": Signal(None, "float"),
            "frequency_hz": Signal("Hz", "float"),
            "energy_kwh": Signal("kWh", "float"),
        }
        if self.phases == 3:
            for n in (1, 2, 3):
                sig[f"voltage_l{n}_v"] = Signal("V", "float")
                sig[f"current_l{n}_a"] = Signal("A", "float")
        return sig

    def _begin(self, t_s: float) -> None:
        self.running = self.rng.random() < self.run_s / (self.run_s + self.idle_s)
        self.power_w = self._power()

    def _power(self) -> float:
        return self.idle_w + (self.load_w * self.load if self.running else 0.0)

    def _advance(self, t_s: float, dt_s: float) -> None:
        mean = self.run_s if self.running else self.idle_s
        if self.rng.random() < dt_s / mean:
            self.running = not self.running
        self.load = _clamp(0.85 + (self.load - 0.85) * 0.98 + self.rng.gauss(0.0, 0.02), 0.5, 1.05)
        self.drift_v = [_clamp(d * 0.999 + self.rng.gauss(0.0, 0.05), -6.0, 6.0) for d in self.drift_v]
        self.power_w = self._power()
        self.energy_kwh += self.power_w * dt_s / 3.6e6

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        power = max(0.0, self.power_w + self.rng.gauss(0.0, 3.0))
        pf = _clamp((0.95 if self.running else 0.62) + self.rng.gauss(0.0, 0.01), 0.3, 1.0)
        sag = power / self.phases * 0.0008
        volts = [self.nominal_v + d - sag + self.rng.gauss(0.0, 0.3) for d in self.drift_v]
        amps = [power / self.phases / (v * pf) for v in volts]
        out: dict[str, SignalValue] = {
            "power_w": round(power, 1),
            "voltage_v": round(sum(volts) / len(volts), 1),
            "current_a": round(sum(amps) / len(amps), 3),
            "power_factor": round(pf, 3),
            "frequency_hz": round(50.0 + self.rng.gauss(0.0, 0.02), 2),
            "energy_kwh": round(self.energy_kwh, 4),
        }
        if self.phases == 3:
            for n, (v, a) in enumerate(zip(volts, amps, strict=True), start=1):
                out[f"voltage_l{n}_v"] = round(v, 1)
                out[f"current_l{n}_a"] = round(a, 3)
        return out


# --- network 3D printer -------------------------------------------------------------------------------------


DEFAULT_PRINT_FILES = (
    "bracket_v3.3mf",
    "gear_housing.3mf",
    "drone_arm_petg.3mf",
    "sensor_enclosure.3mf",
    "conveyor_roller.3mf",
    "gripper_finger_tpu.3mf",
    "mine_sensor_mount.3mf",
    "calibration_cube.gcode",
)


@dataclass(slots=True)
class _Job:
    job_id: int
    file: str
    print_s: float
    layers: int
    filament_mm: float
    runout_at: float | None
    error_at: float | None
    progress: float = 0.0


class Printer(Model):
    """Network FDM printer (Bambu/Prusa-like over MQTT) printing one job after another.

    Stages: heating (nozzle and bed to target with lag) -> printing -> cooling -> idle gap -> next job. A job
    may pause once for a filament run-out and resume, or rarely fail with an error (heaters off, job aborted).
    `state` is idle|running|paused|error; `filament_used_mm`, `progress_pct` and `layer` restart each job.
    """

    kind = "printer"
    ambient_c = 25.0

    def __init__(
        self,
        *,
        seed: int,
        files: tuple[str, ...] = DEFAULT_PRINT_FILES,
        job_minutes: tuple[float, float] = (20.0, 120.0),
        gap_minutes: tuple[float, float] = (2.0, 15.0),
        start_progress_pct: float | None = None,
        nozzle_c: float = 215.0,
        bed_c: float = 60.0,
        runout_probability: float = 0.15,
        error_probability: float = 0.03,
    ) -> None:
        super().__init__(seed=seed)
        if not files:
            raise ValueError("a printer needs at least one job file name")
        self.files = files
        self.job_minutes, self.gap_minutes = job_minutes, gap_minutes
        self.start_progress_pct = start_progress_pct
        self.nozzle_c, self.bed_c = nozzle_c, bed_c
        self.runout_probability, self.error_probability = runout_probability, error_probability
        self.stage = "idle"
        self.job: _Job | None = None
        self._jobs = 0
        self.nozzle = self.bed = self.ambient_c
        self._until = 0.0
        self.runaway_at: float | None = None

    # a stuck-on heater: the nozzle climbs past its target until the firmware's protection trips
    runaway_c_per_s: ClassVar[float] = 8.0
    runaway_trip_c: ClassVar[float] = 40.0

    def inject_thermal_runaway(self, at_t_s: float) -> None:
        """Fault: from `at_t_s` on (once the printer heats or prints) the nozzle heater is stuck fully on; at
        target + `runaway_trip_c` the firmware cuts the heaters, aborts the job and reports an error."""
        self.runaway_at = at_t_s

    def signals(self) -> dict[str, Signal]:
        return {
            "state": Signal(None, "string"),
            "stage": Signal(None, "string"),
            "job_id": Signal(None, "int"),
            "job_file": Signal(None, "string"),
            "progress_pct": Signal("%", "float"),
            "layer": Signal(None, "int"),
            "total_layers": Signal(None, "int"),
            "filament_used_mm": Signal("mm", "float"),
            "remaining_s": Signal("s", "int"),
            "nozzle_temp": Signal("degC", "float"),
            "nozzle_target": Signal("degC", "float"),
            "bed_temp": Signal("degC", "float"),
            "bed_target": Signal("degC", "float"),
        }

    def _new_job(self) -> _Job:
        self._jobs += 1
        minutes = self.rng.uniform(*self.job_minutes)
        runout = self.rng.uniform(0.1, 0.9) if self.rng.random() < self.runout_probability else None
        error = self.rng.uniform(0.05, 0.95) if self.rng.random() < self.error_probability else None
        return _Job(
            job_id=self._jobs,
            file=self.rng.choice(self.files),
            print_s=minutes * 60.0,
            layers=self.rng.randint(40, 600),
            filament_mm=minutes * self.rng.uniform(150.0, 400.0),
            runout_at=runout,
            error_at=error,
        )

    def _begin(self, t_s: float) -> None:
        if self.start_progress_pct is None:
            self._until = t_s + self.rng.uniform(0.0, 60.0)
            return
        self.job = self._new_job()
        self.job.progress = _clamp(self.start_progress_pct / 100.0, 0.0, 0.99)
        if self.job.runout_at is not None and self.job.runout_at <= self.job.progress:
            self.job.runout_at = None
        if self.job.error_at is not None and self.job.error_at <= self.job.progress:
            self.job.error_at = None
        self.stage = "printing"
        self.nozzle, self.bed = self.nozzle_c, self.bed_c

    def _targets(self) -> tuple[float, float]:
        if self.stage in ("heating", "printing", "paused"):
            return self.nozzle_c, self.bed_c
        return 0.0, 0.0

    def _advance(self, t_s: float, dt_s: float) -> None:
        noz_t, bed_t = self._targets()
        if self.runaway_at is not None and t_s >= self.runaway_at and noz_t:
            self.nozzle += self.runaway_c_per_s * dt_s
            if self.nozzle >= noz_t + self.runaway_trip_c:
                self.runaway_at = None
                self.stage, self._until = "error", t_s + self.rng.uniform(120.0, 300.0)
            return
        if noz_t:
            self.nozzle += _clamp((noz_t - self.nozzle) / 8.0, -4.0, 4.0) * dt_s
            self.bed += _clamp((bed_t - self.bed) / 40.0, -0.6, 0.6) * dt_s
        else:
            self.nozzle = _lag(self.nozzle, self.ambient_c, 60.0, dt_s)
            self.bed = _lag(self.bed, self.ambient_c, 300.0, dt_s)
        job = self.job
        if self.stage == "idle" and t_s >= self._until:
            self.job = self._new_job()
            self.stage = "heating"
        elif self.stage == "heating" and self.nozzle >= noz_t - 2.0 and self.bed >= bed_t - 1.5:
            self.stage = "printing"
        elif self.stage == "printing" and job is not None:
            job.progress = min(1.0, job.progress + dt_s / job.print_s)
            if job.error_at is not None and job.progress >= job.error_at:
                job.progress, job.error_at = job.error_at, None
                self.stage, self._until = "error", t_s + self.rng.uniform(120.0, 300.0)
            elif job.runout_at is not None and job.progress >= job.runout_at:
                job.progress, job.runout_at = job.runout_at, None
                self.stage, self._until = "paused", t_s + self.rng.uniform(60.0, 240.0)
            elif job.progress >= 1.0:
                self.stage, self._until = "cooling", t_s + 60.0 * self.rng.uniform(*self.gap_minutes)
        elif self.stage == "paused" and t_s >= self._until:
            self.stage = "printing"
        elif self.stage == "error" and t_s >= self._until:
            self.stage, self._until = "cooling", t_s + 60.0 * self.rng.uniform(*self.gap_minutes)
        elif self.stage == "cooling" and self.nozzle < 50.0:
            self.stage = "idle"

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        job = self.job
        noz_t, bed_t = self._targets()
        state = {"heating": "running", "printing": "running", "paused": "paused", "error": "error"}
        progress = job.progress if job else 0.0
        return {
            "state": state.get(self.stage, "idle"),
            "stage": self.stage,
            "job_id": job.job_id if job else 0,
            "job_file": job.file if job else "",
            "progress_pct": round(progress * 100.0, 1),
            "layer": min(job.layers, math.ceil(progress * job.layers)) if job else 0,
            "total_layers": job.layers if job else 0,
            "filament_used_mm": round(progress * job.filament_mm, 1) if job else 0.0,
            "remaining_s": round((1.0 - progress) * job.print_s) if job and self.stage != "cooling" else 0,
            "nozzle_temp": round(self.nozzle + self.rng.gauss(0.0, 0.3), 1),
            "nozzle_target": float(noz_t),
            "bed_temp": round(self.bed + self.rng.gauss(0.0, 0.2), 1),
            "bed_target": float(bed_t),
        }


# --- laser cutter on a metered smart plug, with a badge reader ------------------------------------------------


class LaserCutter(Model):
    """A CO2 laser cutter behind a metered smart plug, with an RFID badge reader beside it.

    Operators come and go: a session begins with a swipe of one of `badges`, has a few cutting runs (tube, chiller
    and exhaust draw 1.5-2.5 kW) with setup pauses in between (standby around 60 W), and ends with the same badge
    swiped again; then the cutter stands idle until the next operator. `badge` is reported only at the step of a
    swipe (a reader sends one message per swipe); `energy_kwh` is the plug's meter and never decreases.
    Without badges there are no sessions to announce: the cutter still runs, unattended.
    """

    kind = "laser"

    def __init__(
        self,
        *,
        seed: int,
        badges: tuple[str, ...] = (),
        session_minutes: tuple[float, float] = (3.0, 8.0),
        cut_s: tuple[float, float] = (30.0, 120.0),
        pause_s: tuple[float, float] = (20.0, 60.0),
        gap_minutes: tuple[float, float] = (1.0, 4.0),
        first_swipe_s: tuple[float, float] = (15.0, 45.0),
        standby_w: float = 60.0,
        cut_w: float = 2000.0,
    ) -> None:
        super().__init__(seed=seed)
        self.badges = badges
        self.session_minutes, self.cut_s, self.pause_s, self.gap_minutes = session_minutes, cut_s, pause_s, \
            gap_minutes
        self.first_swipe_s = first_swipe_s
        self.standby_w, self.cut_w = standby_w, cut_w
        self.energy_kwh = self.rng.uniform(50.0, 900.0)
        self.operator: str | None = None
        self.in_session = False
        self.cutting = False
        self.power_w = 0.0
        self._session_end = 0.0
        self._until = 0.0  # end of the current cut, pause or idle gap
        self._swipe: str | None = None

    def signals(self) -> dict[str, Signal]:
        return {"power_w": Signal("W", "float"), "energy_kwh": Signal("kWh", "float"),
                "badge": Signal(None, "string")}

    def _begin(self, t_s: float) -> None:
        self._until = t_s + self.rng.uniform(*self.first_swipe_s)

    def _advance(self, t_s: float, dt_s: float) -> None:
        if t_s >= self._until:
            if not self.in_session:  # the next operator arrives and swipes in
                self.in_session, self.cutting = True, False
                self.operator = self.rng.choice(self.badges) if self.badges else None
                self._swipe = self.operator
                self._session_end = t_s + 60.0 * self.rng.uniform(*self.session_minutes)
                self._until = t_s + self.rng.uniform(*self.pause_s)
            elif t_s >= self._session_end and not self.cutting:  # done: swipes out; the cutter stands idle
                self._swipe, self.operator, self.in_session = self.operator, None, False
                self._until = t_s + 60.0 * self.rng.uniform(*self.gap_minutes)
            else:
                self.cutting = not self.cutting
                self._until = t_s + self.rng.uniform(*(self.cut_s if self.cutting else self.pause_s))
        self.power_w = (self.cut_w * (0.9 + 0.1 * self.rng.random()) if self.cutting
                        else self.standby_w if self.in_session else 2.0)
        self.energy_kwh += self.power_w * dt_s / 3.6e6

    def _read(self, t_s: float) -> dict[str, SignalValue]:
        out: dict[str, SignalValue] = {"power_w": round(max(0.0, self.power_w + self.rng.gauss(0.0, 2.0)), 1),
                                       "energy_kwh": round(self.energy_kwh, 4)}
        if self._swipe is not None:
            out["badge"], self._swipe = self._swipe, None
        return out


MODELS: dict[str, type[Model]] = {m.kind: m for m in (Furnace, Chamber, EnvSensor, PowerMeter, Printer,
                                                      LaserCutter)}
