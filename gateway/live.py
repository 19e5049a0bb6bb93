"""Live view of every machine: latest value per signal, state, last seen; fan-out to WebSocket subscribers.

The hub is updated by the pipeline (readings) and by driver supervisors (connection up/down). Readers (HTTP API,
WebSocket, web page) get plain JSON-ready dicts in the shape DESIGN.md promises for machine objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.machines import MACHINE_STATES, MachineMeta
from gateway.reading import Quality, Reading, Value, now_ns

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1000


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class SignalValue:
    value: Value
    unit: str | None
    ts_ns: int
    quality: Quality


@dataclass(slots=True)
class MachineLive:
    meta: MachineMeta
    signals: dict[str, SignalValue] = field(default_factory=dict)
    last_seen_ns: int | None = None
    connected: bool = False
    state: str = "offline"
    state_since_ns: int | None = None
    maintenance: bool = False


class LiveHub:
    def __init__(self, machines: Sequence[MachineMeta], *, clock: Callable[[], int] = now_ns,
                 stale_min_s: float = 10.0) -> None:
        self._clock = clock
        self._stale_min_s = stale_min_s
        self._m: dict[str, MachineLive] = {m.id: MachineLive(m) for m in machines}
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped_to_slow_clients = 0

    # --- writers -------------------------------------------------------------------------------------------
    def update(self, readings: Sequence[Reading]) -> None:
        touched: set[str] = set()
        for r in readings:
            m = self._m.get(r.machine)
            if m is None:
                continue
            prev = m.signals.get(r.signal)
            if prev is None or r.source_ns >= prev.ts_ns:
                m.signals[r.signal] = SignalValue(r.value, r.unit, r.source_ns, r.quality)
            if m.last_seen_ns is None or r.receive_ns > m.last_seen_ns:
                m.last_seen_ns = r.receive_ns
            touched.add(r.machine)
        for mid in touched:
            self._refresh_state(self._m[mid])
            self._publish({"type": "machine", "machine": self.machine(mid)})

    def set_connected(self, machine_ids: Sequence[str], connected: bool) -> None:
        for mid in machine_ids:
            m = self._m.get(mid)
            if m is None or m.connected == connected:
                continue
            m.connected = connected
            self._refresh_state(m)
            self._publish({"type": "machine", "machine": self.machine(mid)})

    def tick(self) -> None:
        """Re-evaluate staleness; called periodically so silent machines turn `offline`."""
        for m in self._m.values():
            before = m.state
            self._refresh_state(m)
            if m.state != before:
                self._publish({"type": "machine", "machine": self.machine(m.meta.id)})

    def publish_event(self, event: dict[str, Any]) -> None:
        self._publish(event)

    # --- state ---------------------------------------------------------------------------------------------
    def is_stale(self, m: MachineLive) -> bool:
        if m.last_seen_ns is None:
            return True
        limit_s = max(3 * m.meta.expected_interval_s, self._stale_min_s)
        return (self._clock() - m.last_seen_ns) / 1e9 > limit_s

    def _derive_state(self, m: MachineLive) -> str:
        if m.maintenance:
            return "maintenance"
        if self.is_stale(m):
            return "offline"
        reported = m.signals.get("state")
        if reported is not None and isinstance(reported.value, str) and reported.value in MACHINE_STATES:
            return reported.value
        return "idle"

    def _refresh_state(self, m: MachineLive) -> None:
        new = self._derive_state(m)
        if new != m.state or m.state_since_ns is None:
            if new != m.state:
                log.info("machine state changed", extra={"machine": m.meta.id, "from": m.state, "to": new})
            m.state = new
            m.state_since_ns = self._clock()

    # --- readers -------------------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return list(self._m)

    def has(self, machine_id: str) -> bool:
        return machine_id in self._m

    def meta(self, machine_id: str) -> MachineMeta:
        return self._m[machine_id].meta

    def machine(self, machine_id: str) -> dict[str, Any]:
        m = self._m[machine_id]
        stale = self.is_stale(m)
        return {
            "id": m.meta.id,
            "name": m.meta.name,
            "kind": m.meta.kind,
            "driver": m.meta.driver,
            "lab": m.meta.lab,
            "state": m.state,
            "state_since": iso(m.state_since_ns),
            "last_seen": iso(m.last_seen_ns),
            "connected": m.connected,
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
