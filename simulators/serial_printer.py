"""A virtual Marlin-family 3D printer on a pseudo-terminal, printing from its SD card.

It speaks the serial protocol the way the real firmwares do — Marlin 2.x, Prusa firmware or Klipper's
serial-compatible replies — including line numbers and checksums (with `Resend:`), `busy:` keep-alives while a
job heats up (and queued commands answered only afterwards, as Marlin does during M109/M190), M155 auto-reports,
`//action:` host notifications and `Error:` halts. Jobs run realistically: heat-up, printing with progress and
filament use, cool-down, then the next job; simulated time may run faster than the wall clock (`time_scale`).

Failure modes on demand: `thermal_runaway()`, `filament_runout()` / `resume()`, `unplug()` / `plug()` (the job
keeps printing from SD meanwhile), `inject_noise(kind)`, `garble` (wrong baud), `go_silent()` / `wake()`,
`corrupt_next_line()` (a host line arrives damaged: checksum error and resend request), `reset()` (the reset
button; with `reset_on_connect` also the first line a host sends, as an Arduino-style auto-reset board does).

A reset behaves like the real boot: what the host sends during the bootloader is lost, optional bootloader noise
(`bootloader_noise_lines`, garbage at another baud rate), `start` (on some boards with glitch bytes glued to it,
`reset_glitch`, e.g. `RESET_GLITCH`), then the banner (`echo:`
lines, the settings report) without any `ok`; commands that arrive during the banner are answered after it, in
order. The firmware answers strictly one command at a time: a command that arrives while an earlier one is still
unanswered, or in the same write as another one, is counted in `overlaps` (a host that floods the firmware).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Literal

from drivers.serial.marlin import unnumber
from simulators.serial_pty import PtyDevice

Flavour = Literal["marlin", "prusa", "klipper"]
Phase = Literal["idle", "heating", "printing", "paused", "cooling", "halted", "bootloader", "banner"]
NoiseKind = Literal["binary", "garbled", "over_long", "partial_line", "blank"]

JOB_FILES = ("bracket_v3.gcode", "gear_housing_PETG.gcode", "hinge_x4.gcode", "sensor_mount.gcode",
             "cable_clip_x12.gcode", "fan_duct_v2.gcode")
AMBIENT_C = 23.0
BOOTLOADER_S = 0.5  # wall seconds a reset spends in the bootloader, deaf to the host
BANNER_LINES_PER_TICK = 2
RESET_GLITCH = b"\xff\x00"  # what the TX line does while the MCU resets: bytes glued to the first line
MARLIN_BANNER = (
    "echo:PowerUp", "Marlin 2.1.2.1", "echo: Last Updated: 2023-07-12 | Author: (none, default config)",
    "echo: Compiled: Jun 10 2024", "echo: Free Memory: 4295  PlannerBufferBytes: 1232",
    "echo:V86 stored settings retrieved (669 bytes; crc 9046)", "echo:; Linear Units:", "echo:  G21 ; (mm)",
    "echo:; Temperature Units:", "echo:  M149 C ; Units in Celsius", "echo:; Steps per unit:",
    "echo: M92 X80.00 Y80.00 Z400.00 E93.00", "echo:; Hotend PID:", "echo:  M301 P21.73 I1.54 D76.55",
    "echo:; Power-loss recovery:", "echo:  M413 S1 ; ON", "echo:SD card ok")
PRUSA_BANNER = (
    "echo: 3.13.3-7094", "echo: Last Updated: Feb 27 2024 16:22:26 | Author: (none, default config)",
    "Compiled: Feb 27 2024", "echo: Free Memory: 2117  PlannerBufferBytes: 1392",
    "echo:Stored settings retrieved", "echo:SD card ok", "LCD status changed")


def dos_name(name: str, index: int = 1) -> str:
    stem, _, ext = name.rpartition(".")
    short = re.sub(r"[^A-Z0-9]", "", stem.upper())
    return f"{short[:6]}~{index}.{ext.upper()[:3]}"


def duration_text(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h {m}m {s}s"
    if h:
        return f"{h}h {m}m {s}s"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


@dataclass
class SimJob:
    file: str
    size: int
    duration_s: float
    nozzle_target: float
    bed_target: float
    elapsed_s: float = 0.0
    progress: float = 0.0  # 0..1


class VirtualPrinter(PtyDevice):
    kind = "printer"

    def __init__(self, link_path: str | None = None, *, name: str = "printer", flavour: Flavour = "marlin",
                 time_scale: float = 1.0, seed: int = 1, job_duration_s: float = 1800.0,
                 idle_between_jobs_s: float | None = 300.0, start_progress_pct: float | None = None,
                 keepalive: bool = True, filament_mm_per_s: float = 1.6, reset_on_connect: bool = False,
                 bootloader_noise_lines: int = 0, reset_glitch: bytes = b"") -> None:
        super().__init__(link_path, name=name)
        self.flavour: Flavour = flavour
        self.time_scale = time_scale
        self.rng = random.Random(seed)
        self.job_duration_s = job_duration_s
        self.idle_between_jobs_s = idle_between_jobs_s
        self.keepalive = keepalive
        self.filament_mm_per_s = filament_mm_per_s
        self.reset_on_connect = reset_on_connect
        self.bootloader_noise_lines = bootloader_noise_lines
        self.reset_glitch = reset_glitch
        self.overlaps = 0
        self.resets = 0
        self.phase: Phase = "idle"
        self.job: SimJob | None = None
        self.nozzle = AMBIENT_C + self.rng.uniform(-1, 1)
        self.bed = AMBIENT_C + self.rng.uniform(-1, 1)
        self.nozzle_target = 0.0
        self.bed_target = 0.0
        self.filament_total_mm = self.rng.uniform(50_000, 900_000)
        self.print_time_total_s = self.rng.uniform(50 * 3600, 900 * 3600)
        self.prints = self.rng.randrange(20, 400)
        self.finished = self.prints - self.rng.randrange(0, 5)
        self.jobs_done = 0
        self.last_n = 0
        self.autoreport_s = 0.0
        self.silent = False
        self._corrupt = 0
        self._queued: list[str] = []
        self._boot_input: list[str] = []
        self._banner: list[str] = []
        self._boot_until = 0.0
        self._seen_host = False
        self._last_chunk = -1
        self._last_wall: float | None = None
        self._next_report = 0.0
        self._next_busy = 0.0
        self._next_wait_temp = 0.0
        self._next_m73 = 0.0
        self._idle_left_s = (idle_between_jobs_s or 0.0) * self.rng.uniform(0.05, 0.3)
        if start_progress_pct is not None:
            self._begin_job(printing=True, progress=start_progress_pct / 100.0)

    # --- model --------------------------------------------------------------------------------------------
    def _new_job(self) -> SimJob:
        name = JOB_FILES[self.rng.randrange(len(JOB_FILES))]
        duration = self.job_duration_s * self.rng.uniform(0.8, 1.2)
        petg = "PETG" in name
        return SimJob(file=name, size=int(duration * self.rng.uniform(400, 900)), duration_s=duration,
                      nozzle_target=240.0 if petg else 215.0, bed_target=80.0 if petg else 60.0)

    def _begin_job(self, *, printing: bool = False, progress: float = 0.0) -> None:
        job = self._new_job()
        job.progress = progress
        job.elapsed_s = progress * job.duration_s
        self.job = job
        self.nozzle_target, self.bed_target = job.nozzle_target, job.bed_target
        self.prints += 1
        if printing:
            self.nozzle, self.bed = job.nozzle_target, job.bed_target
            self.phase = "printing"
        else:
            self.phase = "heating"
            self.write_line(f"echo:Now fresh file: {dos_name(job.file)}" if self.flavour != "klipper" else
                            f"// File opened:{job.file} Size:{job.size}")
            if self.flavour != "klipper":
                self.write_line(f"File opened: {dos_name(job.file)} Size: {job.size}")
                self.write_line("File selected")

    def start_job(self) -> None:
        """Start a job now (as if a technician picked a file on the printer's screen)."""
        with self.lock:
            if self.job is None and self.phase != "halted":
                self._begin_job()

    def _finish_job(self) -> None:
        self.job = None
        self.finished += 1
        self.jobs_done += 1
        self.nozzle_target = self.bed_target = 0.0
        self.phase = "cooling"
        self._idle_left_s = self.idle_between_jobs_s or 0.0
        if self.flavour != "klipper":
            self.write_line("Done printing file")
        self._flush_queue()

    def tick(self, now: float) -> None:
        with self.lock:
            if self._last_wall is None:
                self._last_wall = now
            wall_dt = now - self._last_wall
            self._last_wall = now
            dt = wall_dt * self.time_scale
            if self.phase in ("bootloader", "banner"):
                self._boot(now)
                return
            if self.phase == "halted":
                return
            self._physics(dt)
            self._advance(dt, now)
            if self.silent or not self.plugged.is_set():
                return
            if self.autoreport_s > 0 and now >= self._next_report:
                self._next_report = now + self.autoreport_s
                self.write_line(" " + self._temps())
            if self.phase == "heating" and self.flavour == "marlin":
                if self.keepalive and now >= self._next_busy:
                    self._next_busy = now + 2.0
                    self.write_line("echo:busy: processing")
                if now >= self._next_wait_temp:
                    self._next_wait_temp = now + 1.0
                    self.write_line(self._temps() + " W:?")
            if self.phase == "paused" and self.keepalive and now >= self._next_busy:
                self._next_busy = now + 2.0
                self.write_line("echo:busy: paused for user")
            if self.phase == "printing" and self.flavour == "prusa" and now >= self._next_m73 and self.job:
                self._next_m73 = now + 5.0
                left_min = int((1 - self.job.progress) * self.job.duration_s / 60)
                self.write_line(f"NORMAL MODE: Percent done: {int(self.job.progress * 100)}; "
                                f"print time remaining in mins: {left_min}; Change in mins: -1")

    def _physics(self, dt: float) -> None:
        if dt <= 0:
            return
        for attr, target, tau in (("nozzle", self.nozzle_target, 20.0), ("bed", self.bed_target, 70.0)):
            goal = target if target > 0 else AMBIENT_C
            current = getattr(self, attr)
            k = 1.0 - math.exp(-dt / tau)
            setattr(self, attr, current + (goal - current) * k + self.rng.gauss(0, 0.05))

    def _advance(self, dt: float, now: float) -> None:
        job = self.job
        if self.phase == "heating" and job is not None:
            if abs(self.nozzle - job.nozzle_target) < 2.0 and abs(self.bed - job.bed_target) < 2.0:
                self.phase = "printing"
                self._flush_queue()
        elif self.phase == "printing" and job is not None:
            job.elapsed_s += dt
            job.progress = min(1.0, job.progress + dt / job.duration_s)
            self.filament_total_mm += self.filament_mm_per_s * dt
            self.print_time_total_s += dt
            if job.progress >= 1.0:
                self._finish_job()
        elif self.phase == "cooling":
            if self.nozzle < 50.0:
                self.phase = "idle"
        elif self.phase == "idle" and self.idle_between_jobs_s is not None:
            self._idle_left_s -= dt
            if self._idle_left_s <= 0:
                self._begin_job()

    def _power(self, temp: float, target: float) -> int:
        if target <= 0:
            return 0
        hold = 0.25 + target / 1000.0
        return max(0, min(127, round(127 * (hold + (target - temp) / 8.0))))

    def _temps(self) -> str:
        n, nt, b, bt = self.nozzle, self.nozzle_target, self.bed, self.bed_target
        if self.flavour == "klipper":
            return f"B:{b:.1f} /{bt:.1f} T0:{n:.1f} /{nt:.1f}"
        if self.flavour == "prusa":
            return (f"T:{n:.1f} /{nt:.1f} B:{b:.1f} /{bt:.1f} T0:{n:.1f} /{nt:.1f} "
                    f"@:{self._power(n, nt)} B@:{self._power(b, bt)} P:0.0 A:{AMBIENT_C + 8:.1f}")
        return f"T:{n:.2f} /{nt:.2f} B:{b:.2f} /{bt:.2f} @:{self._power(n, nt)} B@:{self._power(b, bt)}"

    # --- protocol -----------------------------------------------------------------------------------------
    def on_line(self, line: str) -> None:
        with self.lock:
            if self.silent or self.phase == "halted":
                return
            first, self._seen_host = not self._seen_host, True
            if first and self.reset_on_connect:
                self.reset()  # the host's open raised DTR: the board resets and this line dies in the bootloader
                return
            if self.phase == "bootloader":
                return  # deaf until the firmware runs
            if self._queued or self._boot_input or self.chunk == self._last_chunk:
                self.overlaps += 1  # sent before the previous command's answer could have been read
            self._last_chunk = self.chunk
            if self.phase == "banner":
                self._boot_input.append(line)  # received into the serial buffer, handled once setup() is done
                return
            self._handle(line)

    def _handle(self, line: str) -> None:
        with self.lock:
            n, command, ok = unnumber(line)
            if self._corrupt > 0:
                self._corrupt -= 1
                ok = False
            if n is not None:
                is_m110 = command.split()[0].upper() == "M110" if command else False
                if not ok:
                    self._line_error(f"checksum mismatch, Last Line: {self.last_n}")
                    return
                if is_m110:
                    m = re.search(r"M110\s+N(\d+)", command)
                    self.last_n = int(m.group(1)) if m else n
                elif n in (self.last_n, self.last_n - 1):
                    return  # a resent line that already arrived: Marlin drops it silently
                elif n != self.last_n + 1:
                    self._line_error(f"Line Number is not Last Line Number+1, Last Line: {self.last_n}")
                    return
                else:
                    self.last_n = n
            if self.phase == "heating" and self.flavour == "marlin" and not command.upper().startswith("M110"):
                self._queued.append(command)  # the queue is blocked by M109/M190 from the SD file
                return
            self._execute(command)

    def _line_error(self, text: str) -> None:
        if self.flavour == "klipper":
            self.write_line("ok")
            return
        self.write_line(f"Error:{text}")
        self.write_line(f"Resend: {self.last_n + 1}")
        self.write_line("ok")

    def _flush_queue(self) -> None:
        queued, self._queued = self._queued, []
        for command in queued:
            self._execute(command)

    def _unknown(self, command: str) -> None:
        if self.flavour == "klipper":
            self.write_line(f'// Unknown command:"{command.split()[0].upper()}"')
        else:
            self.write_line(f'echo:Unknown command: "{command}"')
        self.write_line("ok")

    def _execute(self, command: str) -> None:
        parts = command.split()
        if not parts:
            return
        code = parts[0].upper()
        args = parts[1:]
        job = self.job
        if code == "M110":
            self.write_line("ok")
        elif code == "M115":
            self._m115()
        elif code == "M105":
            self.write_line("ok " + self._temps())
        elif code == "M155" and self.flavour != "klipper":
            s = next((float(a[1:]) for a in args if a.upper().startswith("S")), 0.0)
            self.autoreport_s = s
            self.write_line("ok")
        elif code == "M27" and args and args[0].upper() == "C" and self.flavour != "klipper":
            if job is not None:
                self.write_line(f"Current file: {dos_name(job.file)} {job.file}")
            else:
                self.write_line("Current file: (no file)")
            self.write_line("ok")
        elif code == "M27":
            if job is not None and self.phase in ("printing", "heating"):
                self.write_line(f"SD printing byte {int(job.progress * job.size)}/{job.size}")
            else:
                self.write_line("Not SD printing." if self.flavour == "klipper" else "Not SD printing")
            self.write_line("ok")
        elif code == "M31" and self.flavour != "klipper":
            elapsed = job.elapsed_s if job is not None else 0.0
            self.write_line(f"echo:Print time: {duration_text(elapsed)}")
            self.write_line("ok")
        elif code == "M78" and self.flavour == "marlin":
            failed = self.prints - self.finished - (1 if job is not None else 0)
            self.write_line(f"Stats: Prints: {self.prints}, Finished: {self.finished}, Failed: {failed}")
            self.write_line(f"Stats: Total time: {duration_text(self.print_time_total_s)}, Longest job: 9h 12m 5s")
            self.write_line(f"Stats: Filament used: {self.filament_total_mm / 1000:.2f}m")
            self.write_line("ok")
        else:
            self._unknown(command)

    def _m115(self) -> None:
        if self.flavour == "klipper":
            self.write_line("ok FIRMWARE_VERSION:v0.12.0-85-gd785b396 FIRMWARE_NAME:Klipper")
            return
        if self.flavour == "prusa":
            self.write_line("FIRMWARE_NAME:Prusa-Firmware 3.13.3 based on Marlin "
                            "FIRMWARE_URL:https://github.com/prusa3d/Prusa-Firmware PROTOCOL_VERSION:1.0 "
                            "MACHINE_TYPE:Prusa i3 MK3S EXTRUDER_COUNT:1 UUID:00000000-0000-0000-0000-000000000000")
            caps = {"AUTOREPORT_TEMP": 1, "AUTOREPORT_FANS": 1, "AUTOREPORT_POSITION": 1, "EXTENDED_M20": 1,
                    "PRUSA_MMU2": 1}
        else:
            self.write_line("FIRMWARE_NAME:Marlin 2.1.2.1 (Jun 10 2024 12:00:00) "
                            "SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 "
                            "MACHINE_TYPE:Ender-3 V2 EXTRUDER_COUNT:1 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff")
            caps = {"SERIAL_XON_XOFF": 0, "BINARY_FILE_TRANSFER": 0, "EEPROM": 1, "VOLUMETRIC": 1,
                    "AUTOREPORT_TEMP": 1, "PROGRESS": 0, "PRINT_JOB": 1, "AUTOLEVEL": 1, "RUNOUT": 1,
                    "EMERGENCY_PARSER": 1, "PROMPT_SUPPORT": 1, "SDCARD": 1, "AUTOREPORT_SD_STATUS": 0,
                    "LONG_FILENAME": 1, "THERMAL_PROTECTION": 1, "HOST_ACTION_COMMANDS": 1}
        for cap, on in caps.items():
            self.write_line(f"Cap:{cap}:{on}")
        self.write_line("ok")

    # --- failure modes ------------------------------------------------------------------------------------
    def thermal_runaway(self) -> None:
        """The hotend cannot hold its temperature: Marlin stops everything and halts."""
        with self.lock:
            self.nozzle_target = self.bed_target = 0.0
            if self.flavour == "klipper":
                self.write_line('!! Heater extruder not heating at expected rate')
                self.write_line("// Klipper state: Shutdown")
            else:
                self.write_line("Error:Thermal Runaway, system stopped! Heater_ID: 0")
                self.write_line("Error:Printer halted. kill() called!")
            self.job = None
            self.phase = "halted"

    def reset(self) -> None:
        """The reset button: the firmware boots again (bootloader, `start`, banner; see the module docstring)."""
        with self.lock:
            self.resets += 1
            self.job = None
            self.autoreport_s = 0.0
            self.last_n = 0
            self.nozzle_target = self.bed_target = 0.0
            self._queued.clear()
            self._boot_input.clear()
            if self.flavour == "klipper":  # the host software restarts; the serial side just says so
                self.phase = "idle"
                self.write_line("start")
                return
            self.phase = "bootloader"
            self._boot_until = 0.0  # set by the next tick, in the simulator's own clock
            for i in range(self.bootloader_noise_lines):
                self.write_raw(bytes((0x80 + (i * 37 + k * 11) % 0x7F) for k in range(12)) + b"\r\n")

    def _boot(self, now: float) -> None:
        if self.phase == "bootloader":
            if not self._boot_until:
                self._boot_until = now + BOOTLOADER_S
                return
            if now < self._boot_until:
                return
            self.write_raw(self.reset_glitch + b"start\n")
            self.phase = "banner"
            self._banner = list(MARLIN_BANNER if self.flavour == "marlin" else PRUSA_BANNER)
            return
        for _ in range(BANNER_LINES_PER_TICK):
            if self._banner:
                self.write_line(self._banner.pop(0))
        if not self._banner:
            self.phase = "idle"
            self._idle_left_s = self.idle_between_jobs_s or 0.0
            pending, self._boot_input = self._boot_input, []
            for line in pending:
                self._handle(line)

    def filament_runout(self) -> None:
        """The runout sensor trips: the job pauses until `resume()`."""
        with self.lock:
            if self.phase != "printing":
                return
            self.phase = "paused"
            if self.flavour != "klipper":
                self.write_line("//action:prompt_begin FilamentRunout T0")
                self.write_line("//action:paused")
            else:
                self.write_line("// action:paused")

    def resume(self) -> None:
        with self.lock:
            if self.phase == "paused":
                self.phase = "printing"
                self.write_line("//action:resumed")

    def cancel(self) -> None:
        """The job is stopped from the printer's screen."""
        with self.lock:
            if self.job is None:
                return
            self.job = None
            self.nozzle_target = self.bed_target = 0.0
            self.phase = "cooling"
            self._idle_left_s = self.idle_between_jobs_s or 0.0
            self._flush_queue()

    def go_silent(self) -> None:
        """The firmware hangs: no answers, no reports (until `wake()`)."""
        with self.lock:
            self.silent = True

    def wake(self) -> None:
        with self.lock:
            self.silent = False

    def corrupt_next_line(self, count: int = 1) -> None:
        """The next host line(s) arrive damaged, as with a noisy cable."""
        with self.lock:
            self._corrupt += count

    def inject_noise(self, kind: NoiseKind) -> None:
        with self.lock:
            if kind == "binary":
                self.write_raw(b" T:210.00 /215.00 B:\x00\x0760.00 /60.00\x02\n")
            elif kind == "garbled":
                self.write_raw(bytes([0xF8, 0x80, 0xFE, 0x9C, 0xE0, 0x80, 0xF0, 0xC3, 0xFF, 0x86]) + b"\n")
            elif kind == "over_long":
                self.write_raw(b"echo:" + b"X" * 5000 + b"\n")
            elif kind == "partial_line":
                self.write_raw(b"T:21")
            elif kind == "blank":
                self.write_raw(b" \t  \r\n")  # whitespace only: line noise on an idle cable

    def describe(self) -> str:
        fw = {"marlin": "Marlin 2.1.2.1", "prusa": "Prusa-Firmware 3.13.3", "klipper": "Klipper v0.12"}[self.flavour]
        what = f"printing {self.job.file} ({self.job.progress:.0%})" if self.job else self.phase
        return f"virtual {fw} printer {self.name}, {what}, on {self.path}" + (
            f" -> {self.slave_name}" if self.link_path else "")
