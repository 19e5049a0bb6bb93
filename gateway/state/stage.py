"""The state stage: machine states, jobs, usage, alert rules and the business store, after the outbox commit.

The pipeline commits readings, acknowledges their sources, and only then `offer`s them here; `run` (an asyncio
task of its own) takes everything queued and processes it in iterations of at most `ITERATION_READINGS`
readings, yielding to the event loop between them. So neither a slow business store nor a failing alert rule
ever delays a commit or an acknowledgement. (Running the stage inline after each commit was the other choice:
it is as fast when the stage keeps up, but a slow iteration would hold the next commit; with a queue of its own
the stage can also coalesce under overload.)

One iteration:
- readings are cut per machine into *frames*: a frame ends where a signal repeats, so every value a machine sent
  is seen by the state engine and the alert rules — a crossing inside a batch is never missed;
- the state engine follows each frame (usage, jobs, state); the alert rules then take every frame of the
  iteration at once (`RuleStep.observe`);
- every write to the business store (events, alert rows, production) is one transaction (`EventBus.batch`),
  after which events are delivered with their ids;
- then one `machine` message per machine that changed goes to WebSocket clients (coalesced per iteration).

The queue holds at most `capacity` readings. When the stage falls behind that far it coalesces what is queued
to the latest reading of every signal (latest values stay right; values in between are not evaluated, and
`state_coalesced_readings_total` counts them) — it never makes the pipeline wait. A failure in an iteration is
counted in `live_update_errors_total` and logged (at most once a minute); the next iteration goes on.

Maintenance mode (a technician's) is part of a machine's state and lives here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config.operations import StateSection
from gateway.fanout import Fanout
from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Quality, Reading
from gateway.state.bus import EventBus
from gateway.state.engine import StateEngine
from gateway.state.events import Event
from gateway.state.model import MAINTENANCE, OFFLINE, MachineView, SignalValue, iso

log = logging.getLogger(__name__)

ITERATION_READINGS = 5000
ERROR_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Frame:
    """Readings of one machine that alert rules evaluate together, and the machine as they left it."""

    view: MachineView
    readings: Sequence[Reading]


class RuleStep(Protocol):
    """The alert rules, as the stage drives them."""

    def observe(self, frames: Sequence[Frame], now_ns: int) -> None: ...

    def tick(self, machines: Sequence[MachineView], now_ns: int) -> None: ...


class MachineState:
    __slots__ = ("basis", "maintenance", "meta", "signals", "state", "state_since_ns", "underlying")

    def __init__(self, meta: MachineMeta) -> None:
        self.meta = meta
        self.signals: dict[str, SignalValue] = {}  # as of the readings processed (the live view may be ahead)
        self.state = OFFLINE
        self.state_since_ns: int | None = None
        self.maintenance = False
        self.basis = "stale"
        self.underlying = OFFLINE  # the state it would have outside maintenance mode (alert rules look at this)


class StateStage:
    def __init__(self, machines: Sequence[MachineMeta], values: LiveValues, *, section: StateSection | None = None,
                 bus: EventBus | None = None, fanout: Fanout | None = None, metrics: Metrics | None = None,
                 capacity: int = 100_000) -> None:
        self.values = values
        self.clock = values.clock
        self.section = section or StateSection()
        self.bus = bus or EventBus()
        self.fanout = fanout or Fanout()
        self.metrics = metrics or Metrics()
        self.engine = StateEngine(machines, self.section, emit=self.bus.emit)
        self.rules: RuleStep | None = None
        self.capacity = capacity
        self._m: dict[str, MachineState] = {m.id: MachineState(m) for m in machines}
        self._queue: deque[Sequence[Reading]] = deque()
        self._queued = 0
        self._ready = asyncio.Event()
        self._dirty: dict[str, None] = {}
        self._error_logged_at: float | None = None
        self.bus.subscribe(self._fan_out_event)

    # --- input ---------------------------------------------------------------------------------------------
    def offer(self, readings: Sequence[Reading]) -> None:
        """Committed readings; never blocks (see the module's docstring)."""
        if not readings:
            return
        if self._queue and self._queued + len(readings) > self.capacity:
            self._coalesce()
        self._queue.append(readings)
        self._queued += len(readings)
        self._ready.set()

    def _coalesce(self) -> None:
        latest: dict[tuple[str, str], Reading] = {}
        for rs in self._queue:
            for r in rs:
                latest[(r.machine, r.signal)] = r
        dropped = self._queued - len(latest)
        self._queue.clear()
        self._queue.append(list(latest.values()))
        self._queued = len(latest)
        if dropped:
            self.metrics.inc("state_coalesced_readings_total", dropped)

    def queued(self) -> int:
        return self._queued

    def _take(self) -> list[Sequence[Reading]]:
        out: list[Sequence[Reading]] = []
        n = 0
        while self._queue and (not out or n + len(self._queue[0]) <= ITERATION_READINGS):
            rs = self._queue.popleft()
            out.append(rs)
            n += len(rs)
        self._queued -= n
        return out

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            batches = self._take()
            try:
                self.process(batches)
            except Exception:
                self._failed(batches)
            await asyncio.sleep(0)  # the API, the WebSocket and the pipeline run between two iterations

    def _failed(self, batches: Sequence[Sequence[Reading]]) -> None:
        drivers = {self._m[r.machine].meta.driver for rs in batches for r in rs if r.machine in self._m}
        for driver in sorted(drivers) or ["state"]:
            self.metrics.inc("live_update_errors_total", driver=driver)
        now = time.monotonic()
        if self._error_logged_at is None or now - self._error_logged_at >= ERROR_LOG_INTERVAL_S:
            self._error_logged_at = now
            log.exception("state engine, alert rules or the business store failed on %d reading(s); the readings "
                          "are stored all the same", sum(len(rs) for rs in batches))

    # --- one iteration -------------------------------------------------------------------------------------
    def process(self, batches: Sequence[Sequence[Reading]]) -> None:
        """Follow every reading of `batches` (oldest batch first); see the module's docstring."""
        now = self.clock()
        frames: list[Frame] = []
        with self.bus.batch():
            open_: dict[str, tuple[list[Reading], set[str]]] = {}
            for rs in batches:
                for r in rs:
                    ms = self._m.get(r.machine)
                    if ms is None:
                        continue
                    frame = open_.get(r.machine)
                    if frame is None:
                        frame = open_[r.machine] = ([], set())
                    elif r.signal in frame[1]:
                        self._close(ms, frame[0], now, frames)
                        frame = open_[r.machine] = ([], set())
                    frame[0].append(r)
                    frame[1].add(r.signal)
                    ms.signals[r.signal] = SignalValue(r.value, r.unit, r.source_ns, r.quality)
            for mid, (rs, _) in open_.items():
                self._close(self._m[mid], rs, now, frames)
            self._observe(frames, now)
        self._publish_dirty()

    def _close(self, ms: MachineState, readings: list[Reading], now: int, frames: list[Frame]) -> None:
        readings.sort(key=lambda r: r.source_ns)
        self.engine.observe(ms.meta.id, readings, ms.signals, ms.state)
        self._refresh(ms, now)
        frames.append(Frame(self._view(ms, dict(ms.signals)), readings))
        self._dirty[ms.meta.id] = None

    def _observe(self, frames: Sequence[Frame], now: int) -> None:
        if self.rules is None or not frames:
            return
        try:
            self.rules.observe(frames, now)
        except Exception:  # a bug in a rule must not lose the iteration's events
            self._failed([f.readings for f in frames])

    def _view(self, ms: MachineState, signals: dict[str, SignalValue] | None = None) -> MachineView:
        # rules see the machine's own state; maintenance mode suppresses their alerts instead of hiding them
        return MachineView(ms.meta, ms.signals if signals is None else signals, ms.underlying, ms.state_since_ns,
                           self.values.get(ms.meta.id).last_seen_ns, ms.maintenance)

    def _refresh(self, ms: MachineState, now: int) -> None:
        mid = ms.meta.id
        # fresh as the live view says (a lagging stage never turns machines offline), but only once the stage has
        # followed a reading of the machine: before that its readings are still on their way here, and judging the
        # machine without them would announce a state nothing reported (idle "by default" for a moment)
        ms.underlying, basis = self.engine.derive(mid, ms.signals, now_ns=now, maintenance=False,
                                                  fresh=bool(ms.signals) and self.values.fresh(mid))
        new = MAINTENANCE if ms.maintenance else ms.underlying
        ms.basis = "maintenance" if ms.maintenance else basis
        if ms.state_since_ns is None:
            ms.state_since_ns = now
        if new != ms.state:
            old, since = ms.state, ms.state_since_ns
            ms.state, ms.state_since_ns = new, now
            self.engine.transition(mid, old, new, since_ns=since, now_ns=now, signals=ms.signals, basis=ms.basis)
            self._dirty[mid] = None

    def _publish_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {}
        if self.fanout.subscriber_count():
            for mid in dirty:
                self.fanout.publish({"type": "machine", "machine": self.machine(mid)})

    def _fan_out_event(self, event: Event) -> None:
        self.fanout.publish({"type": "event", "event": event.as_dict()})

    # --- time, connections, maintenance mode ---------------------------------------------------------------
    def tick(self) -> None:
        """Re-evaluate staleness, timers and time-based rules; called every second so silent machines turn
        `offline`. Staleness is judged from the live view, so a stage that lags never turns machines offline."""
        now = self.clock()
        with self.bus.batch():
            for ms in self._m.values():
                self._refresh(ms, now)
                self.engine.accrue(ms.meta.id, ms.state, now)
            if self.rules is not None:
                self.rules.tick([self._view(ms) for ms in self._m.values()], now)
        self._publish_dirty()

    def set_connected(self, machine_ids: Sequence[str], connected: bool) -> None:
        """A driver says its machines are (or are no longer) reachable: a lost connection is `offline` at once."""
        changed = self.values.set_connected(machine_ids, connected)
        if not changed:
            return
        now = self.clock()
        with self.bus.batch():
            for mid in changed:
                self._refresh(self._m[mid], now)
                self._dirty[mid] = None
        self._publish_dirty()

    def set_maintenance(self, machine_id: str, active: bool, *, by: str = "", note: str = "") -> dict[str, Any]:
        """A technician takes a machine into (or out of) maintenance; its alerts are suppressed meanwhile."""
        ms = self._m[machine_id]
        if ms.maintenance != active:
            now = self.clock()
            with self.bus.batch():
                ms.maintenance = active
                self.bus.emit(Event(now, machine_id, "maintenance_mode", {"active": active, "by": by, "note": note}))
                self._refresh(ms, now)
                self._observe([Frame(self._view(ms), ())], now)
                self._dirty[machine_id] = None
            self._publish_dirty()
        return self.machine(machine_id)

    def restore_maintenance(self, machine_ids: Sequence[str]) -> None:
        """Machines that were in maintenance before a restart stay in it."""
        now = self.clock()
        with self.bus.batch():
            for mid in machine_ids:
                if mid in self._m:
                    self._m[mid].maintenance = True
                    self._refresh(self._m[mid], now)

    # --- readers -------------------------------------------------------------------------------------------
    def in_maintenance(self) -> list[str]:
        return [mid for mid, ms in self._m.items() if ms.maintenance]

    def state_of(self, machine_id: str) -> MachineState:
        return self._m[machine_id]

    def ids(self) -> list[str]:
        return list(self._m)

    def has(self, machine_id: str) -> bool:
        return machine_id in self._m

    def machine(self, machine_id: str) -> dict[str, Any]:
        """The machine object of the API and the WebSocket: latest values from the live view, state from here."""
        ms = self._m[machine_id]
        mv = self.values.get(machine_id)
        stale = self.values.is_stale(machine_id)
        job = self.engine.job(machine_id)
        meta = ms.meta
        return {
            "id": meta.id,
            "name": meta.name,
            "kind": meta.kind,
            "driver": meta.driver,
            "lab": meta.lab,
            "state": ms.state,
            "state_since": iso(ms.state_since_ns),
            "state_basis": ms.basis,
            "maintenance_mode": ms.state == MAINTENANCE,
            "last_seen": iso(mv.last_seen_ns),
            "connected": mv.connected,
            "job": None if job is None else {"name": job["name"], "job_id": job["job_id"],
                                             "since": iso(int(str(job["start_ns"]))),
                                             "material_m": job["material_m"]},
            "signals": {
                name: {
                    "value": s.value,
                    "unit": s.unit,
                    "ts": iso(s.ts_ns),
                    "quality": "stale" if stale and s.quality is Quality.GOOD else s.quality.value,
                }
                for name, s in sorted(mv.signals.items())
            },
        }

    def machines(self) -> list[dict[str, Any]]:
        return [self.machine(mid) for mid in self._m]
