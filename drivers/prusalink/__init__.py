"""PrusaLink: Prusa printers (MK4, XL, MINI, CORE One; MK3S with PrusaLink on a Raspberry Pi) over their HTTP API."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.prusalink.config import PrusaLinkMachine
from drivers.prusalink.driver import PrusaLinkDriver
from gateway.driver import Driver, DriverEnv, DriverSpec


def build(machines: Sequence[PrusaLinkMachine], env: DriverEnv) -> list[Driver]:
    """One connection per printer: a printer that hangs never delays another."""
    return [PrusaLinkDriver(m) for m in machines]


DRIVER = DriverSpec(
    name="prusalink",
    machine_model=PrusaLinkMachine,
    build=build,
    summary="Prusa printers through PrusaLink's HTTP API (v1 status and job, Digest authentication), read-only.",
    simulator="simulators.prusalink_sim:simulator",
)
