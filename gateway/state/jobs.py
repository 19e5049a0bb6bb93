"""Jobs of one machine (a print, a CNC programme run): start, end, name, duration, material and energy used,
result.

A job starts on an explicit `job_event` start (serial printers), on a new job id while the machine works, or when
the machine starts running with a job it had not run before; it ends on an explicit end, on a new job, or when
the machine leaves work: back to idle (completed, or cancelled when the progress shows it stopped early) or into
error (failed). Machines that report no job signals have no jobs (their running periods are state events).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.reading import Quality, Reading
from gateway.state.derive import NS, number
from gateway.state.events import Event
from gateway.state.model import ERROR, IDLE, PAUSED, RUNNING, SignalValue, StateSettings, normalise

_START = {"start", "started", "begin", "print_start", "job_start"}
_END = {"end", "ended", "finish", "finished", "done", "complete", "completed", "print_done", "job_end"}
_CANCEL = {"cancel", "cancelled", "canceled", "stop", "stopped", "abort", "aborted"}
_FAIL = {"fail", "failed", "failure", "error"}


@dataclass(slots=True)
class Job:
    key: str | None
    name: str
    job_id: str | None
    start_ns: int
    material_m: float = 0.0
    energy_kwh: float = 0.0


def _key(value: object) -> str | None:
    if value is None or value == "" or value == 0 or value == "0":
        return None
    return normalise(value) if not isinstance(value, str) else value


class JobTracker:
    def __init__(self, machine: str, settings: StateSettings) -> None:
        self.machine = machine
        self.settings = settings
        self._job_signals = frozenset(settings.job_signals())  # looked up for every reading
        self.active: Job | None = None
        self.last_key: str | None = None
        self.seen_job_signal = False
        self.explicit = False  # the machine reports job events itself

    def _current_key(self, signals: Mapping[str, SignalValue]) -> str | None:
        for name in (self.settings.job_id_signal, self.settings.job_file_signal):
            sv = signals.get(name) if name else None
            if sv is not None and sv.quality is not Quality.BAD and (k := _key(sv.value)) is not None:
                return k
        return None

    def _start(self, signals: Mapping[str, SignalValue], ts_ns: int) -> Event:
        s = self.settings
        file_sv = signals.get(s.job_file_signal) if s.job_file_signal else None
        id_sv = signals.get(s.job_id_signal) if s.job_id_signal else None
        job_id = _key(id_sv.value) if id_sv is not None else None
        name = str(file_sv.value) if file_sv is not None and file_sv.value not in (None, "") else (job_id or "job")
        self.active = Job(self._current_key(signals), name, job_id, ts_ns)
        return Event(ts_ns, self.machine, "job_start", {"job": name, "job_id": job_id})

    def _end(self, result: str, ts_ns: int) -> Event | None:
        job = self.active
        if job is None:
            return None
        self.active = None
        self.last_key = job.key
        data = {"job": job.name, "job_id": job.job_id, "result": result,
                "duration_s": round(max(0, ts_ns - job.start_ns) / NS, 3), "material_m": round(job.material_m, 4)}
        if job.energy_kwh > 0:  # the machine has an energy meter
            data["energy_kwh"] = round(job.energy_kwh, 6)
        return Event(ts_ns, self.machine, "job_end", data)

    def add_material(self, metres: float) -> None:
        if self.active is not None and metres > 0:
            self.active.material_m += metres

    def add_energy(self, kwh: float) -> None:
        if self.active is not None and kwh > 0:
            self.active.energy_kwh += kwh

    def on_reading(self, r: Reading, signals: Mapping[str, SignalValue], state: str) -> list[Event]:
        s = self.settings
        if r.signal not in self._job_signals:
            return []
        self.seen_job_signal = True
        out: list[Event] = []
        if r.signal == s.job_event_signal and r.quality is not Quality.BAD:
            self.explicit = True
            word = normalise(r.value)
            if word in _START:
                if (e := self._end("completed", r.source_ns)) is not None:
                    out.append(e)
                out.append(self._start(signals, r.source_ns))
            elif word in _END | _CANCEL | _FAIL:
                result = "completed" if word in _END else "cancelled" if word in _CANCEL else "failed"
                if (e := self._end(result, r.source_ns)) is not None:
                    out.append(e)
            return out
        if r.signal == s.job_id_signal and not self.explicit and self.active is not None:
            key = self._current_key(signals)
            if key is not None and key != self.active.key and state in (RUNNING, PAUSED):
                if (e := self._end("completed", r.source_ns)) is not None:
                    out.append(e)
                out.append(self._start(signals, r.source_ns))
        return out

    def on_state(self, old: str, new: str, signals: Mapping[str, SignalValue], ts_ns: int) -> list[Event]:
        if not self.seen_job_signal:
            return []
        out: list[Event] = []
        if new == ERROR:
            if (e := self._end("failed", ts_ns)) is not None:
                out.append(e)
        elif new == IDLE and self.active is not None and not self.explicit:
            progress = number(signals, "progress_pct")
            result = "cancelled" if progress is not None and progress < 99.0 else "completed"
            if (e := self._end(result, ts_ns)) is not None:
                out.append(e)
        elif new == RUNNING and old != PAUSED and self.active is None and not self.explicit:
            key = self._current_key(signals)
            if key is None or key != self.last_key:
                out.append(self._start(signals, ts_ns))
        return out
