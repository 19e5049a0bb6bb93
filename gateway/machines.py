"""What every part downstream of the drivers knows about a machine, independent of its protocol."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.schema import MACHINE_STATES

__all__ = ["MACHINE_STATES", "MachineMeta"]


@dataclass(frozen=True, slots=True)
class MachineMeta:
    id: str
    name: str
    kind: str
    driver: str
    site: str
    lab: str | None = None
    expected_interval_s: float = 5.0
