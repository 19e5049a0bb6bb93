"""What every part downstream of the drivers knows about a machine, independent of its protocol."""

from __future__ import annotations

from dataclasses import dataclass

MACHINE_STATES = ("offline", "idle", "running", "paused", "error", "maintenance")


@dataclass(frozen=True, slots=True)
class MachineMeta:
    id: str
    name: str
    kind: str
    driver: str
    site: str
    lab: str | None = None
    expected_interval_s: float = 5.0
