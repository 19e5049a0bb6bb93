"""Events: what happened to a machine, as opposed to what it measured.

Types: `state` (from, to, duration of the state left, basis), `job_start` / `job_end` (job, job id, duration,
material and energy used, result), `maintenance_mode`, `maintenance_done`, `alert` (lifecycle transitions),
`badge` (a swipe at the machine's badge reader) and `check_in` / `check_out` (billing's check-ins). Events are
persisted in the business store, pushed on the live WebSocket, written to InfluxDB (`events` measurement, for
Grafana annotations) and, for states, published on retained MQTT topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.state.model import iso

EVENT_TYPES = ("state", "job_start", "job_end", "maintenance_mode", "maintenance_done", "alert", "badge", "check_in",
               "check_out")


@dataclass(frozen=True, slots=True)
class Event:
    ts_ns: int
    machine: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": iso(self.ts_ns), "machine": self.machine, "type": self.type,
                "data": self.data}

    def title(self) -> str:
        """One line for humans (Grafana annotation title)."""
        d = self.data
        if self.type == "state":
            return f"{self.machine}: {d.get('from')} → {d.get('to')}"
        if self.type == "job_start":
            return f"{self.machine}: job {d.get('job')} started"
        if self.type == "job_end":
            return f"{self.machine}: job {d.get('job')} {d.get('result')} after {d.get('duration_s', 0):.0f} s"
        if self.type == "maintenance_mode":
            return f"{self.machine}: maintenance mode {'on' if d.get('active') else 'off'}"
        if self.type == "maintenance_done":
            return f"{self.machine}: maintenance task {d.get('task')} done by {d.get('by')}"
        if self.type == "badge":
            return f"{self.machine}: badge swiped"
        if self.type == "check_in":
            return f"{self.machine}: checked in by {d.get('user') or d.get('partner')} ({d.get('via')})"
        if self.type == "check_out":
            return f"{self.machine}: checked out ({d.get('via')}, {d.get('duration_s', 0):.0f} s)"
        if self.type == "alert":
            return f"{self.machine}: alert {d.get('rule')} {d.get('transition')}"
        return f"{self.machine}: {self.type}"
