"""The virtual lab: every simulated machine of a site config, whatever its driver, started and stopped together.

`kartech demo` and `kartech simulate` use this. Simulators are found the way drivers are: each driver's spec names
its simulator (`DriverSpec.simulator`, "module:function"), called with that driver's machines and a
`SimulatorEnv`; it returns a `Simulator`. Each simulator reads the same site file the gateway reads, so what it
serves is exactly what the gateway expects.

A driver with its own settings section (MQTT: its brokers) may depend on the gateway for it (an embedded broker
gets its port and device credentials when the gateway starts): the demo starts those simulators after the gateway
and stops them first; the others (OPC UA servers, serial ports) start before it, so its drivers find them at once.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from gateway.config.models import MachineBase
from gateway.config.site import SiteConfig
from gateway.driver import DriverSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatorEnv:
    site_id: str
    settings: BaseModel | None  # the driver's own section, as the machines see it (the devices' credentials)
    seed: int = 1
    free_ports: bool = False  # listen where the system says rather than where the site file says (see `reachable`)
    # planned faults (`x-simulator-faults:` of a site file): {machine, fault, after_s}
    faults: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    badges: tuple[str, ...] = ()  # badge ids of the site's users (billing.users), for simulated badge readers


class Simulator(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def describe(self) -> list[str]:
        """One line per simulated machine (and planned fault) for the log."""
        ...

    def reachable(self, machine: MachineBase) -> MachineBase:
        """The machine as the gateway finds it once started (e.g. the OPC UA endpoint on a free port)."""
        ...


SimulatorFactory = Callable[[Sequence[Any], SimulatorEnv], Simulator]


def factory(spec: DriverSpec[Any]) -> SimulatorFactory | None:
    if spec.simulator is None:
        return None
    module, _, name = spec.simulator.partition(":")
    fn: SimulatorFactory = getattr(importlib.import_module(module), name)
    return fn


class VirtualLab:
    def __init__(self, specs: Mapping[str, DriverSpec[Any]], *, seed: int = 1, free_ports: bool = False,
                 faults: Sequence[Mapping[str, Any]] = ()) -> None:
        self.specs = specs
        self.seed = seed
        self.free_ports = free_ports
        self.faults = tuple(faults)
        self.parts: dict[str, Simulator] = {}  # driver name -> its simulator, in start order

    def start(self, cfg: SiteConfig, *, with_settings: bool | None = None) -> list[str]:
        """Build and start the simulators of `cfg`'s machines that are not running yet; `with_settings`: only those
        of drivers with (True) or without (False) their own settings section. Returns their description."""
        lines: list[str] = []
        for name, spec in self.specs.items():
            if name in self.parts or (with_settings is not None and (spec.section is not None) != with_settings):
                continue
            build = factory(spec)
            machines = [m for m in cfg.machines if m.driver == name]
            if build is None or not machines:
                continue
            badges = tuple(b for u in (cfg.billing.users if cfg.billing is not None else ()) for b in u.badges)
            part = build(machines, SimulatorEnv(site_id=cfg.site.id, settings=cfg.section(spec.section),
                                                seed=self.seed, free_ports=self.free_ports, faults=self.faults,
                                                badges=badges))
            part.start()
            self.parts[name] = part
            lines += part.describe()
        return lines

    def reachable(self, cfg: SiteConfig) -> SiteConfig:
        """`cfg` with every simulated machine where its simulator really listens."""
        machines = [self.parts[m.driver].reachable(m) if m.driver in self.parts else m for m in cfg.machines]
        return cfg.model_copy(update={"machines": machines})

    def stop_with_settings(self) -> None:
        """Stop the simulators that depend on the gateway's settings (first: their embedded broker is about to go
        away with the gateway)."""
        for name in [n for n in self.parts if self.specs[n].section is not None]:
            self.parts.pop(name).stop()

    def stop(self) -> None:
        for part in reversed(list(self.parts.values())):
            part.stop()
        self.parts.clear()

    def describe(self) -> list[str]:
        return [line for part in self.parts.values() for line in part.describe()]
