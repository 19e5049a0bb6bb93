"""Simulated serial machines for a site config: one virtual device per serial machine, at the machine's `port`.

Printers get a virtual Marlin, Prusa or Klipper firmware in turn (so the demo shows all three); the first printer
is mid-job at start. Instruments are chosen from the machine's config: kind `balance` gets a balance (streaming
when no message has a request), a machine whose requests are SCPI queries (ending in `?`) gets a SCPI meter.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from drivers.serial.config import SerialMachine
from gateway.config.models import MachineBase
from simulators.lab import SimulatorEnv
from simulators.serial_instruments import VirtualBalance, VirtualScpiMeter
from simulators.serial_printer import Flavour, VirtualPrinter
from simulators.serial_pty import PtyDevice

FLAVOURS: tuple[Flavour, ...] = ("marlin", "prusa", "klipper")
DEMO_TIME_SCALE = 10.0


def build_device(machine: SerialMachine, *, index: int, seed: int, time_scale: float) -> PtyDevice:
    pick = random.Random(f"{seed}:{machine.id}")
    if machine.protocol == "marlin":
        mid_job = index == 0
        return VirtualPrinter(
            machine.port, name=machine.id, flavour=FLAVOURS[index % len(FLAVOURS)], time_scale=time_scale,
            seed=pick.randrange(2**32), job_duration_s=pick.uniform(1800, 3600), idle_between_jobs_s=240.0,
            start_progress_pct=pick.uniform(20.0, 60.0) if mid_job else None,
        )
    assert machine.instrument is not None
    requests = [m.request for m in machine.instrument.messages if m.request]
    if machine.kind == "balance":
        return VirtualBalance(machine.port, name=machine.id, seed=pick.randrange(2**32),
                              mode="poll" if requests else "stream")
    if requests and all(r.endswith("?") for r in requests):
        return VirtualScpiMeter(machine.port, name=machine.id, seed=pick.randrange(2**32))
    raise ValueError(
        f'machine "{machine.id}": no serial simulator for kind "{machine.kind}" with requests {requests}; '
        "simulated: printers (protocol marlin), balances (kind balance) and SCPI meters (requests ending in ?)"
    )


class SerialLab:
    def __init__(self, machines: Sequence[SerialMachine], *, seed: int = 1,
                 time_scale: float = DEMO_TIME_SCALE) -> None:
        printers = 0
        self.devices: list[PtyDevice] = []
        for m in machines:
            index = printers if m.protocol == "marlin" else 0
            printers += m.protocol == "marlin"
            self.devices.append(build_device(m, index=index, seed=seed, time_scale=time_scale))

    def start(self) -> None:
        for d in self.devices:
            d.start()

    def stop(self) -> None:
        for d in self.devices:
            d.stop()

    def describe(self) -> list[str]:
        return [f"serial: {d.describe()}" for d in self.devices]

    def reachable(self, machine: MachineBase) -> MachineBase:
        return machine  # each device is a pseudo-terminal linked at the machine's configured port


def simulator(machines: Sequence[SerialMachine], env: SimulatorEnv) -> SerialLab:
    """The virtual-lab part of the serial driver (named by its DRIVER spec)."""
    return SerialLab(machines, seed=env.seed)
