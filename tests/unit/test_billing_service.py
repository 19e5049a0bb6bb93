"""The usage ledger at runtime (gateway/billing/service.py): entries written to the real business store as the
state engine's events happen, attribution by the site's rules, and gateway restarts in the middle of a job —
the state stage and the services on a SQLite file, a stepped clock, the gateway "restarted" by building both again on
the same data directory (the stored events are replayed exactly as after a real restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kit.bill import config
from kit.ops import NS, Clock, Lab, build, feed

from gateway.billing.restarts import continue_after_restart, restart_mark
from gateway.billing.service import NotAssignable, UnknownEntry
from gateway.services import Services
from gateway.state.events import Event

STEP_S = 10


def run(live: Lab, clock: Clock, seconds: int, **signals: object) -> int:
    """The printer reports every 10 s for `seconds` (the gateway ticks after each report); the last report's time."""
    for _ in range(seconds // STEP_S):
        clock.step(STEP_S)
        feed(live, clock, "fdm-01", **signals)  # type: ignore[arg-type]
        live.tick()
    return clock()


def start_job(live: Lab, clock: Clock, name: str, job_id: int) -> int:
    feed(live, clock, "fdm-01", state="idle", job_id=0, job_file="", progress_pct=0.0)
    live.tick()
    clock.step(STEP_S)
    feed(live, clock, "fdm-01", state="printing", job_id=job_id, job_file=name, progress_pct=1.0)
    live.tick()
    return clock()


def finish(live: Lab, clock: Clock) -> int:
    clock.step(STEP_S)
    feed(live, clock, "fdm-01", state="finished", progress_pct=100.0)
    live.tick()
    return clock()


def restart(ops: Services, clock: Clock, data_dir: Path, down_s: int, *, clean: bool) -> tuple[Lab, Services]:
    """Stop the gateway (cleanly, or as if killed: nothing saved at the end) and start a new one after `down_s`."""
    if clean:
        asyncio.run(ops.close())
    else:
        ops.store.close()
    clock.step(down_s)
    return build(config(), data_dir, clock)


def job_events(ops: Services) -> list[tuple[str, str]]:
    rows = ops.store.query("SELECT type, data FROM events WHERE type IN ('job_start', 'job_end') ORDER BY ts_ns, id")
    return [(r["type"], r["data"]) for r in rows]


def test_entries_are_written_as_jobs_end_attributed_by_the_rules(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(config(), tmp_path, clock)
    s1 = start_job(live, clock, "ACME_bracket.gcode", 7)
    run(live, clock, 600, state="printing", progress_pct=50.0)
    assert ops.usage.entries() == []  # nothing while the job runs
    e1 = finish(live, clock)
    [entry] = ops.usage.entries()
    assert (entry.key, entry.partner, entry.project, entry.job, entry.source) == (
        f"fdm-01/{s1}/0", "acme", "ore", "ACME_bracket.gcode", "events")
    assert entry.running == ((s1, e1),)
    assert entry.note == "attribution rule 1"
    s2 = start_job(live, clock, "random.gcode", 8)
    run(live, clock, 60, state="printing", progress_pct=50.0)
    finish(live, clock)
    [unattributed] = ops.usage.unattributed()
    assert (unattributed.key, unattributed.partner, unattributed.note) == (f"fdm-01/{s2}/0", None, "unattributed")
    # the entries are in the store file: a new gateway on the same directory reads them, and adds nothing
    ops.store.close()
    _, again = build(config(), tmp_path, clock)
    assert [e.key for e in again.usage.entries()] == [entry.key, unattributed.key]


def test_assigning_unattributed_usage_is_an_audited_compensating_pair(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(config(), tmp_path, clock)
    s = start_job(live, clock, "random.gcode", 8)
    run(live, clock, 60, state="printing", progress_pct=50.0)
    finish(live, clock)
    key = f"fdm-01/{s}/0"
    with pytest.raises(NotAssignable, match='"nobody" is not a known partner'):
        ops.usage.assign(key, partner="nobody", project=None, by="admin")
    with pytest.raises(NotAssignable, match='"tools" is not a project of partner "lab"'):
        ops.usage.assign(key, partner="lab", project="tools", by="admin")
    with pytest.raises(UnknownEntry, match="no ledger entry 'fdm-01/1/0'"):
        ops.usage.assign("fdm-01/1/0", partner="lab", project=None, by="admin")
    clock.step(3600)
    rev, fixed = ops.usage.assign(key, partner="acme", project="tools", by="aigerim")
    assert (rev.sign, rev.reverses, rev.source, rev.by, rev.recorded_ns) == (-1, key, "assignment", "aigerim", clock())
    assert (fixed.partner, fixed.project, fixed.note) == ("acme", "tools", "assigned to acme/tools by aigerim")
    assert ops.usage.unattributed() == []
    assert [e.key for e in ops.usage.entries(partner="acme")] == [fixed.key]
    with pytest.raises(NotAssignable, match="was assigned or corrected already"):
        ops.usage.assign(key, partner="lab", project=None, by="admin")


@pytest.mark.parametrize("clean", [True, False], ids=["clean-stop", "killed"])
def test_a_restart_in_the_middle_of_a_job_gives_one_correct_session(tmp_path: Path, clean: bool) -> None:
    clock = Clock()
    live, ops = build(config(), tmp_path, clock)
    start = start_job(live, clock, "ACME_bracket.gcode", 7)
    last = run(live, clock, 1200, state="printing", progress_pct=40.0)
    if clean:  # a reading no tick of the hub has seen yet: a clean stop still saves it
        clock.step(5)
        feed(live, clock, "fdm-01", state="printing", progress_pct=40.5)
        last = clock()
    live, ops = restart(ops, clock, tmp_path, 120, clean=clean)  # down for 2 minutes (grace: 5)
    back = clock.step(1)
    feed(live, clock, "fdm-01", state="printing", job_id=7, job_file="ACME_bracket.gcode", progress_pct=41.0)
    live.tick()
    run(live, clock, 1800, state="printing", progress_pct=90.0)
    end = finish(live, clock)
    # the engine announced the job again after the restart; the ledger still has one job, one session
    assert [t for t, _ in job_events(ops)] == ["job_start", "job_start", "job_end"]
    [entry] = ops.usage.entries()
    assert entry.key == f"fdm-01/{start}/0"
    # running until the last reading before the stop, and again from the first one after it: the 2 minutes the
    # gateway was down are a telemetry gap, not billed
    assert entry.running == ((start, last), (back, end))
    assert entry.running_ns == (1200 + (5 if clean else 0) + 1800 + 10) * NS
    assert (entry.partner, entry.project) == ("acme", "ore")
    # and a second restart replays everything again without adding or changing anything
    live, ops = restart(ops, clock, tmp_path, 30, clean=True)
    assert ops.usage.entries() == [entry]


def test_a_long_restart_ends_the_session_and_the_job_continues_in_a_second(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(config(), tmp_path, clock)
    start = start_job(live, clock, "ACME_bracket.gcode", 7)
    last = run(live, clock, 600, state="printing", progress_pct=40.0)
    live, ops = restart(ops, clock, tmp_path, 900, clean=True)  # 15 minutes: longer than the grace
    back = clock.step(1)
    feed(live, clock, "fdm-01", state="printing", job_id=7, job_file="ACME_bracket.gcode", progress_pct=41.0)
    live.tick()
    # the first segment is recorded when the gap turns out longer than the grace (at the restart already)
    assert [e.key for e in ops.usage.entries()] == [f"fdm-01/{start}/0"]
    run(live, clock, 300, state="printing", progress_pct=90.0)
    live, ops = restart(ops, clock, tmp_path, 60, clean=False)  # and once more, briefly
    back2 = clock.step(1)
    feed(live, clock, "fdm-01", state="printing", job_id=7, job_file="ACME_bracket.gcode", progress_pct=91.0)
    live.tick()
    run(live, clock, 100, state="printing", progress_pct=95.0)
    end = finish(live, clock)
    first, second = ops.usage.entries()
    assert (first.key, first.running) == (f"fdm-01/{start}/0", ((start, last),))
    assert second.key == f"fdm-01/{start}/1"
    assert second.running == ((back, back + 300 * NS), (back2, end))


def test_a_long_telemetry_gap_ends_the_session_at_the_last_reading(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(config(), tmp_path, clock)
    start = start_job(live, clock, "ACME_bracket.gcode", 7)
    last = run(live, clock, 300, state="printing", progress_pct=40.0)
    for _ in range(40):  # silence: offline after 10 s, and after the 5-minute grace the session is over
        clock.step(STEP_S)
        live.tick()
    assert live.machine("fdm-01")["state"] == "offline"
    offline = ops.store.one("SELECT ts_ns FROM events WHERE type = 'state' AND json_extract(data, '$.to') = "
                            "'offline'")
    assert offline is not None
    assert offline["ts_ns"] > last
    [entry] = ops.usage.entries()
    assert entry.running == ((start, last),)  # not until the machine was declared offline
    # the printer comes back and finishes: the rest is the job's second session; a restart changes nothing
    back = clock.step(STEP_S)
    feed(live, clock, "fdm-01", state="printing", job_id=7, job_file="ACME_bracket.gcode", progress_pct=41.0)
    live.tick()
    end = finish(live, clock)
    live, ops = restart(ops, clock, tmp_path, 5, clean=True)
    first, second = ops.usage.entries()
    assert first == entry
    assert (second.key, second.running) == (f"fdm-01/{start}/1", ((back, end),))


def test_a_new_run_of_the_same_file_after_the_machine_was_idle_is_a_new_job() -> None:
    t = 1_000 * NS
    ev = [Event(t, "p", "state", {"to": "running"}), Event(t, "p", "job_start", {"job": "a.gcode", "job_id": None}),
          restart_mark("p", t + 60 * NS),
          Event(t + 90 * NS, "p", "state", {"to": "running"}),
          Event(t + 90 * NS, "p", "job_start", {"job": "a.gcode", "job_id": None}),  # re-announced: dropped
          Event(t + 200 * NS, "p", "state", {"to": "idle"}),
          Event(t + 200 * NS, "p", "job_end", {"job": "a.gcode", "job_id": None}),
          restart_mark("p", t + 300 * NS),  # nothing open: no effect
          Event(t + 400 * NS, "p", "state", {"to": "idle"}),
          Event(t + 500 * NS, "p", "job_start", {"job": "a.gcode", "job_id": None})]
    kept = continue_after_restart(reversed(ev))
    assert [e.ts_ns for e in kept if e.type == "job_start"] == [t, t + 500 * NS]
    # after a restart the machine was seen idle: the same file started again is a new run
    ev2 = [*ev[:3], Event(t + 90 * NS, "p", "state", {"to": "idle"}),
           Event(t + 95 * NS, "p", "state", {"to": "running"}),
           Event(t + 95 * NS, "p", "job_start", {"job": "a.gcode", "job_id": None})]
    assert [e.ts_ns for e in continue_after_restart(ev2) if e.type == "job_start"] == [t, t + 95 * NS]
