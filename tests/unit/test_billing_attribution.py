"""The demo's billing section (config/demo.yaml) bills the jobs the virtual lab really runs: every print file and
NC program of the simulators goes to a demo partner, except the hub's own calibration prints."""

from __future__ import annotations

from gateway.billing.attribution import Attributor
from gateway.cli import DEMO_CONFIG
from gateway.config.loader import load
from gateway.registry import discover
from simulators.dynamics import DEFAULT_PRINT_FILES
from simulators.opcua_models import PROGRAMS
from simulators.serial_printer import JOB_FILES


def test_the_simulated_jobs_are_attributed_to_the_demo_partners() -> None:
    cfg = load(DEMO_CONFIG, discover())
    assert cfg.billing is not None
    tiers = {p.id: p.tier for p in cfg.billing.partners}
    assert sorted(tiers.values()) == ["academic", "industrial", "startup"]
    rules = Attributor(cfg.billing.attribution)
    jobs = {("x1c-01", f) for f in DEFAULT_PRINT_FILES} | {("fdm-01", f) for f in JOB_FILES} | {
        ("cnc-01", p) for p in PROGRAMS}
    who = {job: rules.attribute(machine, job) for machine, job in jobs}
    assert [job for job, a in who.items() if a is None] == ["calibration_cube.gcode"]
    assert {a.partner for a in who.values() if a is not None} == set(tiers)
    # the first job of the printer that fails in the demo's first minute, and the CNC's programs, are billed
    assert (a := who["mine_sensor_mount.3mf"]) is not None
    assert (a.partner, a.project) == ("saryarka-mining", "mine-sensors")
    assert all(who[p] is not None for p in PROGRAMS)
    # every machine that runs jobs has a rate card
    priced = {m for card in cfg.billing.rates for m in card.machines} | {
        m.id for m in cfg.machines for card in cfg.billing.rates if m.kind in card.kinds}
    assert {"x1c-01", "x1c-02", "fdm-01", "fdm-02", "fdm-03", "cnc-01"} <= priced
