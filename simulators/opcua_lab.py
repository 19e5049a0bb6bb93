"""The OPC UA part of the virtual lab: one simulator server per loopback endpoint named in the site config.

Machines of kind `cnc` or `furnace` whose `endpoint` is on this host (127.0.0.1, localhost) are simulated by an
`OpcuaSimServer` bound to exactly that port, so the gateway finds them where the config says. A port already in
use is reported with the machine ids and what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlparse

from drivers.opcua.config import OpcuaMachine
from gateway.config.models import MachineBase
from simulators.lab import SimulatorEnv
from simulators.opcua_sim import Kind, OpcuaSimServer, describe

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SIMULATED_KINDS: tuple[Kind, ...] = ("cnc", "furnace")


class OpcuaLab:
    def __init__(self, machines: Sequence[OpcuaMachine], *, seed: int = 1, interval_s: float = 0.5,
                 free_ports: bool = False) -> None:
        """`free_ports`: listen on ports the system picks instead of the configured ones; `endpoints` then maps
        each configured endpoint to the real one, once started."""
        by_endpoint: dict[tuple[str, int], list[OpcuaMachine]] = {}
        for m in machines:
            url = urlparse(m.endpoint)
            if url.hostname not in LOOPBACK_HOSTS or m.kind not in SIMULATED_KINDS:
                continue
            if m.security.policy != "None":
                log.warning("machine %s: the virtual lab simulates security policy None only; not simulated", m.id)
                continue
            by_endpoint.setdefault((url.hostname or "127.0.0.1", url.port or 4840), []).append(m)
        self.servers = [
            OpcuaSimServer([(m.id, "cnc" if m.kind == "cnc" else "furnace") for m in ms],
                           host="127.0.0.1" if host == "localhost" else host, port=0 if free_ports else port,
                           seed=seed,
                           interval_s=interval_s)
            for (host, port), ms in by_endpoint.items()
        ]
        self._ids = {id(s): [m.id for m in ms] for s, ms in zip(self.servers, by_endpoint.values(), strict=True)}
        self._configured = {id(s): sorted({m.endpoint for m in ms})
                            for s, ms in zip(self.servers, by_endpoint.values(), strict=True)}
        self.endpoints: dict[str, str] = {}  # configured endpoint -> where its simulator listens (once started)

    def start(self) -> None:
        for s in self.servers:
            if s.running:
                continue
            try:
                real = s.start()
                self.endpoints.update(dict.fromkeys(self._configured[id(s)], real))
            except OSError as err:
                log.error("OPC UA simulator for %s cannot listen on %s (%s); free the port or change the "
                          "machines' endpoint in the site file", ", ".join(self._ids[id(s)]), s.endpoint, err)
                s.stop()

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def describe(self) -> list[str]:
        return [line for s in self.servers for line in describe(s)]

    def reachable(self, machine: MachineBase) -> MachineBase:
        if isinstance(machine, OpcuaMachine) and machine.endpoint in self.endpoints:
            return machine.model_copy(update={"endpoint": self.endpoints[machine.endpoint]})
        return machine


def simulator(machines: Sequence[OpcuaMachine], env: SimulatorEnv) -> OpcuaLab:
    """The virtual-lab part of the OPC UA driver (named by its DRIVER spec)."""
    return OpcuaLab(machines, seed=env.seed, free_ports=env.free_ports)
