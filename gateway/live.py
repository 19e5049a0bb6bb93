"""Live view of every machine: latest value per signal, state, last seen; fan-out to WebSocket subscribers.

The hub is updated by the pipeline (readings) and by driver supervisors (connection up/down). Readers (HTTP API,
WebSocket, web page) get plain JSON-ready dicts in the shape DESIGN.md promises for machine objects. The state
of each machine comes from the state engine (`gateway.state`); listeners (alerts, maintenance, the business
store) hear about every update, every tick and every event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config.ops import StateSection
from gateway.machines import MACHINE_STATES, MachineMeta
from gateway.reading import Quality, Reading, now_ns
from gateway.state.engine import StateEngine
from gateway.state.events import Event
from gateway.state.model import MAINTENANCE, OFFLINE, SignalValue, iso

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1000

__all__ = ["MACHINE_STATES", "LiveHub", "LiveListener", "MachineLive", "SignalValue", "iso"]


@dataclass(slots=True)
class MachineLive:
    meta: MachineMeta
    signals: dict[str, SignalValue] = field(default_factory=dict)
    last_seen_ns: int | None = None
    connected: bool = False
    disconnected: bool = False  # its driver said so (as opposed to never having said anything)
    state: str = OFFLINE
    state_since_ns: int | None = None
    maintenance: bool = False
    basis: str = "stale"
    underlying: str = OFFLINE  # the state it would have outside maintenance mode (alert rules look at this)


class LiveListener(Protocol):
    """Whoever wants to hear what the hub hears (the alert engine, maintenance, OEE, the store)."""

    def machine_updated(self, machine: MachineLive, readings: Sequence[Reading], now_ns: int) -> None: ...

    def ticked(self, machines: Sequence[MachineLive], now_ns: int) -> None: ...

    def event(self, event: Event) -> None: ...


class LiveHub:
    def __init__(self, machines: Sequence[MachineMeta], *, clock: Callable[[], int] = now_ns,
                 stale_min_s: float | None = None, state: StateSection | None = None) -> None:
        self._clock = clock
        self.state_config = state or StateSection()
        self._stale_min_s = stale_min_s if stale_min_s is not None else self.state_config.stale_min_s
        self._m: dict[str, MachineLive] = {m.id: MachineLive(m) for m in machines}
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self._listeners: list[LiveListener] = []
        self.dropped_to_slow_clients = 0
        self.engine = StateEngine(machines, self.state_config)
        self.engine.event_listeners.append(self._on_event)
        # persists an event and returns it with its id; set by whoever owns the business store
        self.record_event: Callable[[Event], Event] | None = None

    @property
    def clock(self) -> Callable[[], int]:
        return self._clock

    def add_listener(self, listener: LiveListener) -> None:
        self._listeners.append(listener)

    # --- writers -------------------------------------------------------------------------------------------
    def update(self, readings: Sequence[Reading]) -> None:
        per_machine: dict[str, list[Reading]] = {}
        for r in readings:
            m = self._m.get(r.machine)
            if m is None:
                continue
            # the latest *received* reading is the live value: a source clock that jumped ahead (or back) can
            # never freeze a signal
            m.signals[r.signal] = SignalValue(r.value, r.unit, r.source_ns, r.quality)
            if m.last_seen_ns is None or r.receive_ns > m.last_seen_ns:
                m.last_seen_ns = r.receive_ns
            per_machine.setdefault(r.machine, []).append(r)
        now = self._clock()
        for mid, rs in per_machine.items():
            m = self._m[mid]
            rs.sort(key=lambda r: r.source_ns)
            self.engine.observe(mid, rs, m.signals, m.state)
            self._refresh_state(m, now)
            for listener in self._listeners:
                listener.machine_updated(m, rs, now)
            self._publish({"type": "machine", "machine": self.machine(mid)})

    def set_connected(self, machine_ids: Sequence[str], connected: bool) -> None:
        now = self._clock()
        for mid in machine_ids:
            m = self._m.get(mid)
            if m is None or (m.connected == connected and m.disconnected != connected):
                continue
            m.connected = connected
            m.disconnected = not connected
            self._refresh_state(m, now)
            self._publish({"type": "machine", "machine": self.machine(mid)})

    def set_maintenance(self, machine_id: str, active: bool, *, by: str = "", note: str = "") -> dict[str, Any]:
        """A technician takes a machine into (or out of) maintenance; its alerts are suppressed meanwhile."""
        m = self._m[machine_id]
        now = self._clock()
        if m.maintenance != active:
            m.maintenance = active
            self._on_event(Event(now, machine_id, "maintenance_mode", {"active": active, "by": by, "note": note}))
            self._refresh_state(m, now)
            for listener in self._listeners:
                listener.machine_updated(m, (), now)
            self._publish({"type": "machine", "machine": self.machine(machine_id)})
        return self.machine(machine_id)

    def restore_maintenance(self, machine_ids: Sequence[str]) -> None:
        """Machines that were in maintenance before a restart stay in it."""
        for mid in machine_ids:
            if mid in self._m:
                self._m[mid].maintenance = True
                self._refresh_state(self._m[mid], self._clock())

    def tick(self) -> None:
        """Re-evaluate staleness and timers; called every second so silent machines turn `offline`."""
        now = self._clock()
        for m in self._m.values():
            before = m.state
            self._refresh_state(m, now)
            self.engine.accrue(m.meta.id, m.state, now)
            if m.state != before:
                self._publish({"type": "machine", "machine": self.machine(m.meta.id)})
        machines = list(self._m.values())
        for listener in self._listeners:
            listener.ticked(machines, now)

    def publish_event(self, event: dict[str, Any]) -> None:
        self._publish(event)

    def emit_event(self, event: Event) -> None:
        """Record an event (alerts, maintenance) like the engine's own: store, WebSocket, listeners."""
        self._on_event(event)

    def _on_event(self, event: Event) -> None:
        if self.record_event is not None:
            event = self.record_event(event)
        self._publish({"type": "event", "event": event.as_dict()})
        for listener in self._listeners:
            listener.event(event)

    # --- state ---------------------------------------------------------------------------------------------
    def is_stale(self, m: MachineLive) -> bool:
        if m.last_seen_ns is None:
            return True
        limit_s = max(3 * m.meta.expected_interval_s, self._stale_min_s)
        return (self._clock() - m.last_seen_ns) / 1e9 > limit_s

    def _refresh_state(self, m: MachineLive, now: int) -> None:
        fresh = not self.is_stale(m) and not m.disconnected
        m.underlying, basis = self.engine.derive(m.meta.id, m.signals, now_ns=now, maintenance=False, fresh=fresh)
        new = MAINTENANCE if m.maintenance else m.underlying
        basis = "maintenance" if m.maintenance else basis
        m.basis = basis
        if m.state_since_ns is None:
            m.state_since_ns = now
        if new != m.state:
            old, since = m.state, m.state_since_ns
            m.state, m.state_since_ns = new, now
            self.engine.transition(m.meta.id, old, new, since_ns=since, now_ns=now, signals=m.signals, basis=basis)

    # --- readers -------------------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return list(self._m)

    def has(self, machine_id: str) -> bool:
        return machine_id in self._m

    def meta(self, machine_id: str) -> MachineMeta:
        return self._m[machine_id].meta

    def live(self, machine_id: str) -> MachineLive:
        return self._m[machine_id]

    def in_maintenance(self) -> list[str]:
        return [mid for mid, m in self._m.items() if m.maintenance]

    def machine(self, machine_id: str) -> dict[str, Any]:
        m = self._m[machine_id]
        stale = self.is_stale(m)
        job = self.engine.job(machine_id)
        return {
            "id": m.meta.id,
            "name": m.meta.name,
            "kind": m.meta.kind,
            "driver": m.meta.driver,
            "lab": m.meta.lab,
            "state": m.state,
            "state_since": iso(m.state_since_ns),
            "state_basis": m.basis,
            "maintenance_mode": m.state == MAINTENANCE,
            "last_seen": iso(m.last_seen_ns),
            "connected": m.connected,
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
                for name, s in sorted(m.signals.items())
            },
        }

    def machines(self) -> list[dict[str, Any]]:
        return [self.machine(mid) for mid in self._m]

    # --- subscribers ---------------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subs.discard(q)

    def subscriber_count(self) -> int:
        return len(self._subs)

    def _publish(self, msg: dict[str, Any]) -> None:
        for q in self._subs:
            if q.full():
                # a slow browser tab must not hold memory: it loses its oldest update, and the next update of
                # the same machine supersedes it anyway
                q.get_nowait()
                self.dropped_to_slow_clients += 1
            q.put_nowait(msg)
