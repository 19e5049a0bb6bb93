"""The narrow interface between drivers and everything else.

A driver knows its protocol and nothing else: it turns what its machines send into `Reading`s and hands them to
`DriverContext.emit` (or `emit_blocking` from a library's own thread). It never sees storage, alerts or billing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.config.models import MachineBase

if TYPE_CHECKING:
    from gateway.config.site import SiteConfig
    from gateway.supervisor import DriverContext

Ack = Callable[[], None]


class Driver(Protocol):
    """One connection (a broker, a server, a port) serving one or more machines."""

    @property
    def name(self) -> str:
        """Shown in logs and metrics, e.g. mqtt:lab."""
        ...

    @property
    def machine_ids(self) -> Sequence[str]:
        """Machines this connection serves (shown offline while it is down)."""
        ...

    async def run(self, ctx: DriverContext) -> None:
        """Connect, call `ctx.connected()`, then deliver readings until cancelled.

        Raise `DriverUnavailable` when the connection cannot be made or is lost; the supervisor retries with
        capped, jittered backoff. Return only when there is nothing left to do.
        """
        ...


@dataclass(frozen=True)
class DriverSpec:
    """What each folder under drivers/ declares as its `DRIVER` constant."""

    name: str
    machine_model: type[MachineBase]
    build: Callable[[SiteConfig, Sequence[MachineBase]], Sequence[Driver]]
    summary: str
    # cross-references a single model cannot see (e.g. a machine naming a broker that is not configured):
    # returns (location, value found, message) with locations like ("machines", 3, "broker")
    check: Callable[[SiteConfig], list[tuple[tuple[str | int, ...], object, str]]] | None = None
    # adds the driver's own subcommands (e.g. `kartech opcua browse`) to the `kartech` parser; each subcommand
    # sets `func` (args -> exit code) with `set_defaults`
    commands: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None
