"""OctoPrint: printers connected to an OctoPrint server (OctoPi), read through its REST API."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.octoprint.config import OctoPrintMachine
from drivers.octoprint.driver import OctoPrintDriver
from gateway.driver import Driver, DriverEnv, DriverSpec


def build(machines: Sequence[OctoPrintMachine], env: DriverEnv) -> list[Driver]:
    """One connection per printer: an OctoPrint that hangs never delays another."""
    return [OctoPrintDriver(m) for m in machines]


DRIVER = DriverSpec(
    name="octoprint",
    machine_model=OctoPrintMachine,
    build=build,
    summary="Printers behind OctoPrint through its REST API (/api/printer, /api/job, X-Api-Key), read-only.",
    simulator="simulators.octoprint_sim:simulator",
)
