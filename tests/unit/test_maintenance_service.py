"""Maintenance due by real usage: print hours, cycles, material, calendar days; done resets; restarts keep it."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit.ops import Clock, build, feed, site

from gateway.maintenance.service import UnknownTask

PLANS = """
maintenance:
  warn_at_pct: 50
  plans:
    - {id: nozzle, name: Clean the nozzle, kinds: [printer], every: {running_h: 2, material_m: 500}}
    - {id: spindle, name: Spindle service, machines: [cnc-01], every: {cycles: 1000, days: 30}, warn_at_pct: 90}
    - {id: belts, name: Check belts, kinds: [printer], every: {days: 60}, already_used: {days: 59}}
"""


def print_for(live: object, clock: Clock, minutes: int) -> None:
    feed(live, clock, "fdm-01", state="printing")  # type: ignore[arg-type]
    for _ in range(minutes * 6):
        clock.step(10)
        feed(live, clock, "fdm-01", state="printing")  # type: ignore[arg-type]
        live.tick()  # type: ignore[attr-defined]


def task(ops: object, machine: str, name: str) -> dict[str, object]:
    return ops.maintenance.task(machine, name, ops.clock())  # type: ignore[attr-defined,no-any-return]


def test_print_hours_make_a_task_due_and_done_resets_it(tmp_path: Path) -> None:
    clock = Clock()
    cfg = site(PLANS)
    live, ops = build(cfg, tmp_path, clock)
    feed(live, clock, "fdm-01", state="idle")
    assert task(ops, "fdm-01", "nozzle")["status"] == "ok"
    print_for(live, clock, 60)
    t = task(ops, "fdm-01", "nozzle")
    assert (t["status"], t["pct"]) == ("due_soon", 50.0)
    assert t["limits"]["running_h"] == {"used": 1.0, "limit": 2.0, "pct": 50.0}  # type: ignore[index]
    print_for(live, clock, 60)
    assert task(ops, "fdm-01", "nozzle")["status"] == "due"
    ops.maintenance.check(clock())
    alert = [a for a in ops.book.find() if a["rule"] == "maintenance:nozzle"]
    assert [(a["severity"], a["message"]["en"]) for a in alert] == [
        ("medium", "Printer 1: maintenance 'Clean the nozzle' is due (100 % of its limit).")]
    # restart: the counters and the baseline survive
    ops.save_counters()
    ops.store.close()
    live, ops = build(cfg, tmp_path, clock)
    assert task(ops, "fdm-01", "nozzle")["status"] == "due"
    done = ops.maintenance.done("fdm-01", "nozzle", by="timur", note="new 0.4 mm nozzle", now_ns=clock())
    assert (done["status"], done["pct"]) == ("ok", 0.0)
    assert done["last_done"]["by"] == "timur"  # type: ignore[index]
    log = ops.maintenance.history("fdm-01")
    assert [(e["task"], e["by"], e["note"]) for e in log] == [("nozzle", "timur", "new 0.4 mm nozzle")]
    assert log[0]["usage"]["running_h"]["used"] == 2.0
    assert [a["state"] for a in ops.book.find(state="all") if a["rule"] == "maintenance:nozzle"] == [
        "cleared_unacknowledged"]
    print_for(live, clock, 30)
    assert task(ops, "fdm-01", "nozzle")["pct"] == 25.0  # counting again from zero


def test_cycles_and_calendar_whichever_first(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(PLANS), tmp_path, clock)
    feed(live, clock, "cnc-01", state="Executing", part_count=5000)
    clock.step(60)
    feed(live, clock, "cnc-01", state="Executing", part_count=5950)
    t = task(ops, "cnc-01", "spindle")
    assert (t["status"], t["pct"]) == ("due_soon", 95.0)
    clock.step(31 * 86400)
    t = task(ops, "cnc-01", "spindle")
    assert (t["status"], t["limits"]["days"]["pct"]) == ("due", 103.3)  # type: ignore[index]


def test_already_used_counts_until_first_done(tmp_path: Path) -> None:
    clock = Clock()
    _live, ops = build(site(PLANS), tmp_path, clock)
    assert task(ops, "fdm-01", "belts")["status"] == "due_soon"
    clock.step(86400)
    assert task(ops, "fdm-01", "belts")["status"] == "due"
    ops.maintenance.done("fdm-01", "belts", by="aigerim", note="", now_ns=clock())
    clock.step(86400)
    assert task(ops, "fdm-01", "belts")["pct"] == pytest.approx(1.7)


def test_material_limit(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(PLANS), tmp_path, clock)
    feed(live, clock, "fdm-01", state="printing", job_id=1, filament_used_mm=0.0)
    for mm in range(0, 400_001, 50_000):
        clock.step(1)
        feed(live, clock, "fdm-01", state="printing", filament_used_mm=float(mm))
    t = task(ops, "fdm-01", "nozzle")
    assert t["limits"]["material_m"] == {"used": 400.0, "limit": 500.0, "pct": 80.0}  # type: ignore[index]


def test_tasks_list_and_unknown_task(tmp_path: Path) -> None:
    clock = Clock()
    _, ops = build(site(PLANS), tmp_path, clock)
    tasks = ops.maintenance.tasks(clock())
    assert [(t["machine"], t["task"], t["status"]) for t in tasks] == [
        ("fdm-01", "belts", "due_soon"), ("fdm-01", "nozzle", "ok"), ("cnc-01", "spindle", "ok")]
    with pytest.raises(UnknownTask, match=r"machine 'cnc-01' has no maintenance task 'nozzle' \(its tasks: spindle\)"):
        ops.maintenance.done("cnc-01", "nozzle", by="x", note="", now_ns=clock())
