"""OPC UA: CNC machines, furnaces and PLCs with their own OPC UA server (one connection per machine)."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.opcua.cli import add_commands
from drivers.opcua.config import OpcuaMachine
from drivers.opcua.driver import OpcuaDriver
from gateway.driver import Driver, DriverEnv, DriverSpec


def build(machines: Sequence[OpcuaMachine], env: DriverEnv) -> list[Driver]:
    """One connection per machine: a hung server never stalls another."""
    return [OpcuaDriver(m) for m in machines]


DRIVER = DriverSpec(
    name="opcua",
    machine_model=OpcuaMachine,
    build=build,
    summary="Machines and PLCs with an OPC UA server: subscriptions or polling, security, automatic recovery.",
    commands=add_commands,
    simulator="simulators.opcua_lab:simulator",
)
