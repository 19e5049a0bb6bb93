"""The Moonraker part of the virtual lab: one simulated Moonraker per printer whose URL is on this host.

Each listens exactly where the machine's `url` says (or on a free port with `free_ports`, `reachable` then gives
the machine its real URL) and asks for the machine's `api_key` when it has one, as a real Moonraker would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from drivers.moonraker.config import DEFAULT_PORT, MoonrakerMachine
from gateway.config.models import MachineBase
from simulators.lab import SimulatorEnv
from simulators.moonraker_sim import MoonrakerSim

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class MoonrakerLab:
    def __init__(self, machines: Sequence[MoonrakerMachine], *, seed: int = 1, free_ports: bool = False) -> None:
        self.sims: dict[str, MoonrakerSim] = {}
        for i, m in enumerate(machines):
            url = urlsplit(m.url)
            if url.scheme != "ws" or url.hostname not in LOOPBACK_HOSTS:
                continue
            self.sims[m.id] = MoonrakerSim(port=0 if free_ports else (url.port or DEFAULT_PORT),
                                           api_key=m.api_key, seed=seed + i, name=m.id)

    def start(self) -> None:
        for machine_id, sim in self.sims.items():
            try:
                sim.start()
            except OSError as err:
                log.error("Moonraker simulator for %s cannot listen on port %d (%s); free the port or change the "
                          "machine's url in the site file", machine_id, sim.port, err)

    def stop(self) -> None:
        for sim in self.sims.values():
            sim.stop()

    def describe(self) -> list[str]:
        return [f"{machine_id}: simulated Klipper printer behind Moonraker at {sim.url}"
                f"{' (API key required)' if sim.api_key else ''}" for machine_id, sim in self.sims.items()]

    def reachable(self, machine: MachineBase) -> MachineBase:
        sim = self.sims.get(machine.id)
        if isinstance(machine, MoonrakerMachine) and sim is not None and sim.running:
            return machine.model_copy(update={"url": sim.url})
        return machine


def simulator(machines: Sequence[MoonrakerMachine], env: SimulatorEnv) -> MoonrakerLab:
    """The virtual-lab part of the Moonraker driver (named by its DRIVER spec)."""
    return MoonrakerLab(machines, seed=env.seed, free_ports=env.free_ports)
