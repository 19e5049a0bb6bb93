"""Moonraker: Klipper printers (Voron, RatRig, ...) read through Moonraker's WebSocket (JSON-RPC 2.0)."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.moonraker.config import MoonrakerMachine
from drivers.moonraker.driver import MoonrakerDriver
from gateway.driver import Driver, DriverEnv, DriverSpec


def build(machines: Sequence[MoonrakerMachine], env: DriverEnv) -> list[Driver]:
    """One WebSocket per printer: one Moonraker serves one Klipper."""
    return [MoonrakerDriver(m) for m in machines]


DRIVER = DriverSpec(
    name="moonraker",
    machine_model=MoonrakerMachine,
    build=build,
    summary="Klipper printers through Moonraker's WebSocket: status subscription, Klippy state, API key.",
    simulator="simulators.moonraker_lab:simulator",
)
