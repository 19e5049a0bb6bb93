"""What a Marlin-family printer is doing, from the messages it sends, as readings.

Pure state tracking (no I/O): feed `marlin.Message`s with the time they arrived, get `Reading`s back. The job
survives a reconnect, so an unplugged and replugged cable does not invent a second job start.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.serial import marlin
from gateway.reading import Quality, Reading, Value

STATES = ("idle", "running", "paused", "error")


@dataclass(slots=True)
class Job:
    file: str
    size: int | None = None
    done_bytes: int = 0
    progress_pct: float = 0.0
    finished: bool = False  # "Done printing file" seen
    filament_at_start_m: float | None = None


class PrinterModel:
    """One printer's state; every `on_*` method returns the readings it produced."""

    def __init__(self, machine: str, *, heater_power_full_scale: int = 127) -> None:
        self.machine = machine
        self.full_scale = heater_power_full_scale
        self.state: str | None = None
        self.job: Job | None = None
        self.printing = False  # the firmware says it is printing (SD printing byte)
        self.paused_by_host_action = False
        self.error: str | None = None
        self.firmware: marlin.Firmware | None = None
        self.capabilities: dict[str, bool] = {}
        self.elapsed_s: int | None = None
        self.remaining_from_firmware = False
        self.filament_total_m: float | None = None
        self.open_file: str | None = None
        self.file_query_supported = True  # M27 C (Klipper has no such command)
        self.file_opened_idle = False  # "File opened:" seen and no job yet: busy: now means heating for it
        self._ended_filament_start_m: float | None = None
        self.settled = True  # False from a (re)connect until the first full status round
        self._now_ns = 0

    # --- helpers ------------------------------------------------------------------------------------------
    def _r(self, signal: str, value: Value, unit: str | None = None, quality: Quality = Quality.GOOD) -> Reading:
        if quality is Quality.BAD:
            value = None
        return Reading(self.machine, signal, value, unit, quality, self._now_ns, self._now_ns)

    def _set_state(self, out: list[Reading]) -> None:
        if not self.settled and self.error is None:
            return  # half a status round (the file but not yet the progress) would say idle for a printing job
        if self.error is not None:
            new = "error"
        elif self.printing and not self.paused_by_host_action:
            new = "running"
        elif self.job is not None:
            new = "paused"
        else:
            new = "idle"
        if new != self.state:
            self.state = new
            out.append(self._r("state", new))

    def _start_job(self, file: str, size: int | None, out: list[Reading]) -> None:
        self.job = Job(file=file, size=size, filament_at_start_m=self.filament_total_m)
        self.file_opened_idle = False
        self._ended_filament_start_m = None
        self.elapsed_s = None
        self.remaining_from_firmware = False
        out += [self._r("job_event", "start"), self._r("job_file", file)]

    def _end_job(self, result: str, out: list[Reading]) -> None:
        job = self.job
        if job is None:
            return
        if result == "completed":
            out.append(self._r("progress_pct", 100.0, "%"))
            out.append(self._r("remaining_s", 0, "s"))
        # the end says how it ended (completed, cancelled, failed): the state engine records the job's result by it
        out += [self._r("job_event", result), self._r("job_file", job.file), self._r("job_result", result)]
        self._ended_filament_start_m = job.filament_at_start_m  # the final M78 after the end settles the figure
        self.job = None
        self.printing = False
        self.paused_by_host_action = False

    # --- inputs -------------------------------------------------------------------------------------------
    def on_link_lost(self, now_ns: int) -> list[Reading]:
        """The port went away: the machine is offline until it answers again."""
        self._now_ns = now_ns
        self.state = "offline"
        return [self._r("state", "offline")]

    def on_connected(self, now_ns: int) -> list[Reading]:
        """The port is open again; the state is re-announced with the next status."""
        self._now_ns = now_ns
        self.state = None
        self.settled = False
        return []

    def on_status_round(self, now_ns: int) -> list[Reading]:
        """End of one round of status questions: settle the state."""
        self._now_ns = now_ns
        self.settled = True
        out: list[Reading] = []
        self._set_state(out)
        return out

    def on_message(self, msg: marlin.Message, now_ns: int) -> list[Reading]:
        self._now_ns = now_ns
        out: list[Reading] = []
        match msg:
            case marlin.Temps():
                self._temps(msg, out)
            case marlin.SdProgress(done=done, total=total):
                self._progress(done, total, out)
            case marlin.NotPrinting():
                self.printing = False
                if self.job is not None and (self.job.finished or self.job.progress_pct >= 99.95):
                    self._end_job("completed", out)
                elif self.job is not None and not self.file_query_supported:
                    self._end_job("cancelled", out)  # without M27 C a stopped job cannot be told from a pause
            case marlin.CurrentFile(name=name):
                self.open_file = name
                if name is not None and self.job is not None and self.job.file != name and self.printing:
                    self.job.file = name  # the long name arrived after the job was first seen
                    out.append(self._r("job_file", name))
                if name is None and self.job is not None and not self.printing:
                    self._end_job("completed" if self.job.finished or self.job.progress_pct >= 99.95
                                  else "cancelled", out)
            case marlin.FileOpened(name=name):
                if self.job is None:
                    self.open_file = name
                    self.file_opened_idle = True
            case marlin.DonePrinting():
                if self.job is not None:
                    self.job.finished = True
                    self.printing = False
                    self._end_job("completed", out)
            case marlin.PrintTime(seconds=secs):
                if self.job is not None:
                    self.elapsed_s = secs
                    out.append(self._r("elapsed_s", secs, "s"))
                    self._estimate_remaining(out)
            case marlin.PrusaProgress(percent=pct, remaining_s=remaining):
                if self.job is not None and 0 <= pct <= 100:
                    self.job.progress_pct = pct
                    out.append(self._r("progress_pct", float(pct), "%"))
                if remaining is not None and self.job is not None:
                    self.remaining_from_firmware = True
                    out.append(self._r("remaining_s", remaining, "s"))
            case marlin.Busy(reason=reason):
                if "paused" in reason.lower() and self.job is not None:
                    self.paused_by_host_action = True
                elif self.job is None and self.file_opened_idle and self.error is None:
                    # a file was just opened and the firmware is busy (M109/M190 heat-up from the file):
                    # the job has started, before its first byte is printed
                    self._start_job(self.open_file or "unknown", None, out)
                    self.printing = True
            case marlin.Action(name=name, argument=arg):
                self._action(name, arg, out)
            case marlin.FirmwareError(text=text, fatal=fatal):
                if fatal:
                    self.error = text
                    out.append(self._r("error", text))
                    if self.job is not None:
                        self._end_job("failed", out)
            case marlin.Started():
                if self.job is not None:
                    self._end_job("failed", out)
                self.error = None
                self.printing = False
            case marlin.Firmware():
                self.firmware = msg
                if msg.name == "Klipper":
                    self.file_query_supported = False  # Klipper answers M27 C like M27
                out.append(self._r("firmware", f"{msg.name} {msg.version}".strip()))
            case marlin.Capability(name=name, enabled=enabled):
                self.capabilities[name] = enabled
            case marlin.Stats(print_time_s=pt, filament_m=fil):
                if pt is not None:
                    out.append(self._r("print_time_total_s", pt, "s"))
                if fil is not None:
                    self.filament_total_m = fil
                    out.append(self._r("filament_total_m", fil, "m"))
                    start_m = self._ended_filament_start_m
                    if self.job is not None:
                        if self.job.filament_at_start_m is None:
                            self.job.filament_at_start_m = fil
                        start_m = self.job.filament_at_start_m
                    self._ended_filament_start_m = None
                    if start_m is not None:
                        used_mm = max(0.0, (fil - start_m) * 1000.0)
                        out.append(self._r("filament_used_mm", round(used_mm, 1), "mm"))
            case _:
                pass
        self._set_state(out)
        return out

    def _temps(self, t: marlin.Temps, out: list[Reading]) -> None:
        for signal, value in (("nozzle_temp", t.nozzle), ("nozzle_target", t.nozzle_target), ("bed_temp", t.bed),
                              ("bed_target", t.bed_target), ("chamber_temp", t.chamber)):
            if value is not None:
                out.append(self._r(signal, value, "degC"))
        for signal, raw in (("nozzle_power_pct", t.nozzle_power), ("bed_power_pct", t.bed_power)):
            if raw is not None:
                pct = round(100.0 * raw / self.full_scale, 1)
                quality = Quality.GOOD if 0 <= raw <= self.full_scale else Quality.UNCERTAIN
                out.append(self._r(signal, min(max(pct, 0.0), 100.0), "%", quality))

    def _progress(self, done: int, total: int, out: list[Reading]) -> None:
        if total <= 0:
            return
        self.printing = done < total
        self.paused_by_host_action = False if self.printing else self.paused_by_host_action
        if self.job is None:
            self._start_job(self.open_file or "unknown", total, out)
        assert self.job is not None
        self.job.size = total
        self.job.done_bytes = done
        pct = round(100.0 * done / total, 2)
        self.job.progress_pct = pct
        if not self.remaining_from_firmware:
            out.append(self._r("progress_pct", pct, "%"))
        self._estimate_remaining(out)

    def _estimate_remaining(self, out: list[Reading]) -> None:
        """Linear estimate from elapsed time and progress, marked uncertain (the firmware's own M73 is better)."""
        job = self.job
        if job is None or self.remaining_from_firmware or self.elapsed_s is None or job.progress_pct < 1.0:
            return
        remaining = int(self.elapsed_s * (100.0 - job.progress_pct) / job.progress_pct)
        out.append(self._r("remaining_s", remaining, "s", Quality.UNCERTAIN))

    def _action(self, name: str, arg: str, out: list[Reading]) -> None:
        low = name.lower()
        if low in ("pause", "paused", "out_of_filament") or (low == "prompt_begin" and "runout" in arg.lower()):
            if self.job is not None:
                self.paused_by_host_action = True
            reason = arg or low
            out.append(self._r("message", f"paused: {reason}"))
        elif low in ("resume", "resumed"):
            self.paused_by_host_action = False
        elif low == "cancel":
            if self.job is not None:
                self._end_job("cancelled", out)
        elif low == "notification" and arg:
            out.append(self._r("message", arg))
