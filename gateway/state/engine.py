"""The state engine: per machine, derives the state, follows jobs, counts usage and emits events.

The state stage (stage.py) calls it for every frame of readings and every second. Events (state changes, jobs)
go to `emit` (the event bus) as they happen; production (parts made) is collected in `production` until whoever
writes the business store takes it (`take_production`), in the same transaction as the events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.config.operations import StateSection
from gateway.machines import MachineMeta
from gateway.reading import Quality, Reading
from gateway.state.derive import NS, WorkTimer, derive
from gateway.state.events import Event
from gateway.state.jobs import JobTracker
from gateway.state.model import OFFLINE, SignalValue, StateSettings, resolve
from gateway.state.usage import Production, UsageMeter

log = logging.getLogger(__name__)



@dataclass(slots=True)
class Track:
    meta: MachineMeta
    settings: StateSettings
    jobs: JobTracker
    usage: UsageMeter
    timer: WorkTimer = field(default_factory=WorkTimer)
    basis: str = "stale"


class StateEngine:
    def __init__(self, machines: Sequence[MachineMeta], section: StateSection | None = None, *,
                 emit: Callable[[Event], None] | None = None) -> None:
        self.section = section or StateSection()
        self.tracks: dict[str, Track] = {}
        for m in machines:
            s = resolve(m.kind, m.id, self.section)
            self.tracks[m.id] = Track(m, s, JobTracker(m.id, s), UsageMeter(s))
        self.emit = emit
        self.production: list[tuple[str, Production]] = []

    def settings(self, machine_id: str) -> StateSettings:
        return self.tracks[machine_id].settings

    def _emit(self, events: Sequence[Event]) -> None:
        if self.emit is not None:
            for e in events:
                self.emit(e)

    def _produced(self, machine_id: str, p: Production | None) -> None:
        if p is not None:
            self.production.append((machine_id, p))

    def take_production(self) -> list[tuple[str, Production]]:
        out, self.production = self.production, []
        return out

    # --- called by the state stage ------------------------------------------------------------------------
    def observe(self, machine_id: str, readings: Sequence[Reading], signals: Mapping[str, SignalValue],
                state: str) -> None:
        """Count usage and follow jobs for one machine's readings of a batch (oldest first)."""
        t = self.tracks[machine_id]
        badge = t.settings.badge_signal
        for r in readings:
            metres, kwh, produced = t.usage.on_reading(r)
            if metres:
                t.jobs.add_material(metres)
            if kwh:
                t.jobs.add_energy(kwh)
            self._produced(machine_id, produced)
            if r.signal == badge and r.quality is not Quality.BAD and r.value not in (None, ""):
                # one reading of the badge reader is one swipe; billing checks its user in or out
                self._emit([Event(r.source_ns, machine_id, "badge", {"badge": str(r.value)})])
            events = t.jobs.on_reading(r, signals, state)
            self._after_jobs(t, events)

    def _after_jobs(self, t: Track, events: Sequence[Event]) -> None:
        for e in events:
            if e.type == "job_end":
                self._produced(t.meta.id, t.usage.on_job_end(str(e.data.get("result")), e.ts_ns))
        self._emit(events)

    def derive(self, machine_id: str, signals: Mapping[str, SignalValue], *, now_ns: int, maintenance: bool,
               fresh: bool) -> tuple[str, str]:
        t = self.tracks[machine_id]
        state, basis = derive(t.settings, signals, now_ns=now_ns, timer=t.timer, maintenance=maintenance,
                              fresh=fresh)
        t.basis = basis
        return state, basis

    def transition(self, machine_id: str, old: str, new: str, *, since_ns: int | None, now_ns: int,
                   signals: Mapping[str, SignalValue], basis: str) -> None:
        """Record a state change: usage up to now, the `state` event, then what it means for the current job."""
        t = self.tracks[machine_id]
        t.usage.accrue(old, now_ns)
        duration = round((now_ns - since_ns) / NS, 3) if since_ns is not None else None
        log.info("machine %s: %s -> %s (%s)", machine_id, old, new, basis,
                 extra={"machine": machine_id, "from": old, "to": new, "basis": basis})
        self._emit([Event(now_ns, machine_id, "state",
                          {"from": old, "to": new, "duration_s": duration, "basis": basis})])
        if new != OFFLINE:
            self._after_jobs(t, t.jobs.on_state(old, new, signals, now_ns))

    def accrue(self, machine_id: str, state: str, now_ns: int) -> None:
        self.tracks[machine_id].usage.accrue(state, now_ns)

    # --- read by maintenance, OEE and the API -------------------------------------------------------------
    def counters(self, machine_id: str) -> dict[str, float]:
        return dict(self.tracks[machine_id].usage.counters)

    def job(self, machine_id: str) -> dict[str, object] | None:
        job = self.tracks[machine_id].jobs.active
        if job is None:
            return None
        return {"name": job.name, "job_id": job.job_id, "start_ns": job.start_ns,
                "material_m": round(job.material_m, 4), "energy_kwh": round(job.energy_kwh, 4)}
