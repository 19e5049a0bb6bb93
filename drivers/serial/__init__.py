"""Serial: Marlin-family 3D printers (Marlin, Prusa firmware, Klipper) and line-based instruments on USB/RS-232."""

from __future__ import annotations

import os
from collections.abc import Sequence

from drivers.serial.cli import add_commands
from drivers.serial.config import SerialMachine
from drivers.serial.driver import SerialDriver
from gateway.driver import Driver, DriverEnv, DriverSpec, Problem


def build(machines: Sequence[SerialMachine], env: DriverEnv) -> list[Driver]:
    """One connection per port, and one machine per port."""
    return [SerialDriver(m) for m in machines]


def check(machines: Sequence[tuple[int, SerialMachine]], settings: object) -> list[Problem]:
    """A port has one owner: two machines on the same port (or two links to one device) cannot both work."""
    out: list[Problem] = []
    seen: dict[str, tuple[int, str]] = {}
    for i, m in machines:
        key = os.path.realpath(m.port) if os.path.exists(m.port) else m.port
        if key in seen:
            first_i, first_id = seen[key]
            out.append((("machines", i, "port"), m.port,
                        f'"{m.port}" is already the port of machine "{first_id}" (machines[{first_i}]); '
                        "a serial port has one owner — give each machine its own port"))
        else:
            seen[key] = (i, m.id)
    return out


DRIVER = DriverSpec(
    name="serial",
    machine_model=SerialMachine,
    build=build,
    summary="Marlin-family 3D printers and line-based instruments (balances, SCPI meters) on serial ports.",
    check=check,
    commands=add_commands,
    simulator="simulators.serial_lab:simulator",
)
