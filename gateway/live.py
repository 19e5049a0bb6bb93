"""The latest-values view: per machine, the latest value of every signal, when it was last seen, and whether its
driver says it is connected.

The pipeline updates it for every reading it takes in (a dictionary write per reading, nothing more) and driver
supervisors report connections through the state stage. Everything slower — states, jobs, alerts, the business
store, WebSocket fan-out — runs in the state stage (`gateway.state.stage`), after the outbox commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.machines import MachineMeta
from gateway.reading import Reading, now_ns
from gateway.state.model import SignalValue

__all__ = ["LiveValues", "MachineValues"]


@dataclass(slots=True)
class MachineValues:
    meta: MachineMeta
    signals: dict[str, SignalValue] = field(default_factory=dict)
    last_seen_ns: int | None = None
    connected: bool = False
    disconnected: bool = False  # its driver said so (as opposed to never having said anything)


class LiveValues:
    def __init__(self, machines: Sequence[MachineMeta], *, clock: Callable[[], int] = now_ns,
                 stale_min_s: float = 10.0) -> None:
        self.clock = clock
        self.stale_min_s = stale_min_s
        self._m: dict[str, MachineValues] = {m.id: MachineValues(m) for m in machines}

    def apply(self, readings: Sequence[Reading]) -> None:
        """Take readings in: the latest *received* reading is the live value, so a source clock that jumped
        ahead (or back) can never freeze a signal."""
        machines = self._m
        for r in readings:
            m = machines.get(r.machine)
            if m is None:
                continue
            m.signals[r.signal] = SignalValue(r.value, r.unit, r.source_ns, r.quality)
            if m.last_seen_ns is None or r.receive_ns > m.last_seen_ns:
                m.last_seen_ns = r.receive_ns

    def set_connected(self, machine_ids: Sequence[str], connected: bool) -> list[str]:
        """Record what a driver says; the machines whose connection state changed."""
        changed = []
        for mid in machine_ids:
            m = self._m.get(mid)
            if m is None or (m.connected == connected and m.disconnected != connected):
                continue
            m.connected = connected
            m.disconnected = not connected
            changed.append(mid)
        return changed

    def is_stale(self, machine_id: str) -> bool:
        m = self._m[machine_id]
        if m.last_seen_ns is None:
            return True
        limit_s = max(3 * m.meta.expected_interval_s, self.stale_min_s)
        return (self.clock() - m.last_seen_ns) / 1e9 > limit_s

    def fresh(self, machine_id: str) -> bool:
        """It reports and its driver has not said it is gone."""
        return not self.is_stale(machine_id) and not self._m[machine_id].disconnected

    def ids(self) -> list[str]:
        return list(self._m)

    def has(self, machine_id: str) -> bool:
        return machine_id in self._m

    def get(self, machine_id: str) -> MachineValues:
        return self._m[machine_id]
