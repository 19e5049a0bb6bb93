"""The whole contract between a driver and everything else.

A driver knows its protocol and nothing else: it turns what its machines send into `Reading`s and hands them to
`DriverContext.emit` (or `emit_blocking` from a library's own thread). It never sees storage, alerts or billing,
and it is built from its own machines and a `DriverEnv` — never from the whole site config.

Each folder under drivers/ declares `DRIVER = DriverSpec(...)`; the registry (gateway/registry.py) collects them.
drivers/README.md walks through adding one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel

from gateway.config.models import MachineBase
from gateway.reading import Reading

Ack = Callable[[], None]
P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=MachineBase)
# where a problem is in the site file, e.g. ("machines", 3, "broker"); the value found; what would work
Problem = tuple[tuple[str | int, ...], object, str]


class DriverContext(Protocol):
    """What a driver may do: emit readings, count bad input, report connection state, report a fault.

    The gateway's supervisor implements it (`gateway.supervisor.SupervisedContext`); a test may pass anything with
    these members.
    """

    async def emit(self, readings: Sequence[Reading], ack: Ack | None = None) -> None:
        """Hand readings to the pipeline; waits while the pipeline is full (back-pressure). `ack` is called once
        they are committed to the durable outbox (acknowledge the source there, never earlier); an empty batch
        with an `ack` acknowledges a message that carried nothing usable."""
        ...

    def emit_blocking(self, readings: Sequence[Reading], ack: Ack | None = None) -> None:
        """`emit` from a library's own thread (e.g. paho's network loop); blocks that thread while full."""
        ...

    def bad_input(self, reason: str, machine: str | None, detail: str) -> None:
        """Count a message, line or value that could not be used (`bad_input_total{reason}`); logged at most
        once a minute per reason. Thread-safe."""
        ...

    def connected(self, machine_ids: Sequence[str] | None = None) -> None:
        """The connection is up (again), for all machines or only these. Call on the event loop thread."""
        ...

    def disconnected(self, error: str, machine_ids: Sequence[str] | None = None, *, retrying: bool = True) -> None:
        """These machines (default: all) cannot be read. Losing the whole connection is said by raising
        `DriverUnavailable` from `run` instead. `retrying=False`: the driver is not retrying, the machines come
        back when they report again (a Sparkplug node's next birth, Klipper becoming ready), and `error` says
        so. Call on the event loop thread."""
        ...

    def fault(self, err: BaseException) -> None:
        """The driver failed outside its task (a callback of an async library): restart it. Event loop thread."""
        ...

    def fault_threadsafe(self, err: BaseException) -> None:
        """`fault` from a library's own thread."""
        ...

    def guard(self, fn: Callable[P, R]) -> Callable[P, R | None]:
        """Wrap a callback that a library calls from its own thread: whatever it raises restarts this driver
        instead of killing the library's thread."""
        ...


@dataclass(frozen=True)
class Retry:
    """How soon the supervisor starts a driver again after it failed: capped exponential backoff with jitter."""

    initial_s: float = 1.0
    cap_s: float = 60.0
    immediate_first: bool = False  # the first retry after a good run is at once (a blip costs nothing)


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

    @property
    def retry(self) -> Retry:
        """How the supervisor retries this connection after a failure."""
        ...

    async def run(self, ctx: DriverContext) -> None:
        """Connect, call `ctx.connected()`, then deliver readings until cancelled.

        Raise `DriverUnavailable` when the connection cannot be made or is lost; the supervisor retries with
        capped, jittered backoff (`retry`). Return only when there is nothing left to do.
        """
        ...


@dataclass(frozen=True)
class DriverEnv:
    """Everything a driver is given besides its machines — nothing more.

    `settings` is the driver's own top-level section of the site file (`DriverSpec.section`, e.g. `mqtt:` with
    its brokers), with ${ENV} secrets already resolved; None for a driver without one.
    """

    site_id: str
    timezone: str
    state_dir: Path  # <data_dir>/drivers/<name>, private to the gateway's user (0700)
    settings: BaseModel | None = None


@dataclass(frozen=True)
class DriverSpec(Generic[M]):
    """What each folder under drivers/ declares as its `DRIVER` constant."""

    name: str
    machine_model: type[M]
    build: Callable[[Sequence[M], DriverEnv], Sequence[Driver]]
    summary: str
    # the top-level key of the site file holding this driver's own settings (e.g. "mqtt"), handed to `build`
    # and `check` as `DriverEnv.settings`; None when the machines say everything
    section: str | None = None
    # cross-references a single model cannot see (e.g. a machine naming a broker that is not configured): gets
    # this driver's machines with their index under `machines:` and its own section; returns problems located
    # like ("machines", 3, "broker")
    check: Callable[[Sequence[tuple[int, M]], BaseModel | None], list[Problem]] | None = None
    # adds the driver's own subcommands (e.g. `kartech opcua browse`) to the `kartech` parser; each subcommand
    # sets `func` (args -> exit code) with `set_defaults`
    commands: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None
    # "module:function" building the virtual-lab part for this driver's machines (see simulators/lab.py); named,
    # not imported, so that drivers never depend on simulators
    simulator: str | None = None
