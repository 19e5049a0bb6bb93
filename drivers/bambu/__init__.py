"""Bambu Lab LAN: X1, P1 and A1 printers read over the MQTT broker each printer runs (TLS, access code)."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.bambu.config import BambuMachine
from drivers.bambu.driver import BambuDriver
from gateway.driver import Driver, DriverEnv, DriverSpec, Problem


def build(machines: Sequence[BambuMachine], env: DriverEnv) -> list[Driver]:
    """One connection per printer: each printer is its own broker."""
    return [BambuDriver(m, env.site_id) for m in machines]


def check(machines: Sequence[tuple[int, BambuMachine]], settings: object) -> list[Problem]:
    """A serial names one printer: two machines with the same serial would read the same printer twice."""
    out: list[Problem] = []
    seen: dict[str, tuple[int, str]] = {}
    for i, m in machines:
        if m.serial in seen:
            first_i, first_id = seen[m.serial]
            out.append((("machines", i, "serial"), m.serial,
                        f'"{m.serial}" is already the serial of machine "{first_id}" (machines[{first_i}]); each '
                        "printer has its own serial (Settings > Device on its screen)"))
        else:
            seen[m.serial] = (i, m.id)
    return out


DRIVER = DriverSpec(
    name="bambu",
    machine_model=BambuMachine,
    build=build,
    summary="Bambu Lab printers (X1, P1, A1) over LAN MQTT with TLS and the printer's access code.",
    check=check,
    simulator="simulators.bambu_sim:simulator",
)
