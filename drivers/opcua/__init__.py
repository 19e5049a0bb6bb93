"""OPC UA: CNC machines, furnaces and PLCs with their own OPC UA server (one connection per machine)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from drivers.opcua.cli import add_commands
from drivers.opcua.config import OpcuaMachine
from drivers.opcua.driver import OpcuaDriver
from gateway.config.models import MachineBase
from gateway.config.site import SiteConfig
from gateway.driver import Driver, DriverSpec
from gateway.machines import MACHINE_STATES


def build(cfg: SiteConfig, machines: Sequence[MachineBase]) -> list[Driver]:
    out: list[Driver] = []
    for m in machines:
        assert isinstance(m, OpcuaMachine)
        out.append(OpcuaDriver(m))
    return out


def check(cfg: SiteConfig) -> list[tuple[tuple[str | int, ...], object, str]]:
    """The `state` signal's map must lead to machine states the live hub knows."""
    out: list[tuple[tuple[str | int, ...], object, str]] = []
    for i, m in enumerate(cfg.machines):
        if not isinstance(m, OpcuaMachine):
            continue
        state = m.signals.get("state")
        if state is None or not state.map:
            continue
        for raw, target in state.map.items():
            if target not in MACHINE_STATES:
                close = difflib.get_close_matches(target, MACHINE_STATES, n=1, cutoff=0.5)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                out.append((("machines", i, "signals", "state", "map", raw), target,
                            f'"{target}" is not a machine state; use one of {", ".join(MACHINE_STATES)}{hint}'))
    return out


DRIVER = DriverSpec(
    name="opcua",
    machine_model=OpcuaMachine,
    build=build,
    summary="Machines and PLCs with an OPC UA server: subscriptions or polling, security, automatic recovery.",
    check=check,
    commands=add_commands,
)
