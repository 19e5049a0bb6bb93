"""OPC UA: CNC machines, furnaces and PLCs with their own OPC UA server (one connection per machine)."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.opcua.cli import add_commands
from drivers.opcua.config import OpcuaMachine
from drivers.opcua.driver import OpcuaDriver
from gateway.config.models import MachineBase
from gateway.config.site import SiteConfig
from gateway.driver import Driver, DriverSpec


def build(cfg: SiteConfig, machines: Sequence[MachineBase]) -> list[Driver]:
    out: list[Driver] = []
    for m in machines:
        assert isinstance(m, OpcuaMachine)
        out.append(OpcuaDriver(m))
    return out


DRIVER = DriverSpec(
    name="opcua",
    machine_model=OpcuaMachine,
    build=build,
    summary="Machines and PLCs with an OPC UA server: subscriptions or polling, security, automatic recovery.",
    commands=add_commands,
)
