"""Check-ins (gateway/billing/checkins.py): reserved time, running time outside jobs, energy from the machine's
meter, jobs billed to the checked-in user, badge swipes, the limit on forgotten check-ins — the state stage and
the services on a real business store with a stepped clock; and the check-in routes behind the real app."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kit.bill import BILLING, config
from kit.ops import NS, Clock, Lab, build, feed

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.billing.checkins import (
    AlreadyCheckedIn,
    CheckIn,
    CheckInError,
    NotCheckedIn,
    checkin_entry,
    job_spans,
    running_spans,
    subtract,
)
from gateway.billing.statement import price_entry
from gateway.metrics import Metrics
from gateway.services import Services

MIN = 60 * NS
# the printers' card also prices reserved time and energy; a second user (of another partner) with a badge
CHECKIN_BILLING = BILLING.replace(
    "      material: pla\n", "      material: pla\n      per_reserved_hour: 300\n      per_kwh: 40\n").replace(
    "  users:\n",
    '  checkin_max_h: 1\n  users:\n    - {id: daniyar, name: Daniyar K., partner: lab, badges: ["0BEEF"]}\n')


def lab(tmp_path: Path, clock: Clock) -> tuple[Lab, Services]:
    return build(config(CHECKIN_BILLING), tmp_path, clock)


def report(live: Lab, clock: Clock, minutes: int, **signals: object) -> None:
    """The printer reports every 10 s for `minutes` (the gateway ticks after each report)."""
    for _ in range(minutes * 6):
        clock.step(10)
        feed(live, clock, "fdm-01", **signals)  # type: ignore[arg-type]
        live.tick()


def test_spans() -> None:
    assert running_spans("running", [(5, "idle"), (8, "running"), (20, "idle")], 0, 10) == [(0, 5), (8, 10)]
    assert running_spans(None, [(3, "running")], 0, 10) == [(3, 10)]
    # a start re-announced after a restart continues the job; a job open before the check-in counts from its start
    assert job_spans([(2, "job_start"), (4, "job_start"), (6, "job_end")], 0, 10, open_before=False) == [(2, 6)]
    assert job_spans([(6, "job_end"), (8, "job_start")], 0, 10, open_before=True) == [(0, 6), (8, 10)]
    assert subtract([(0, 10), (20, 30)], [(2, 4), (8, 22)]) == [(0, 2), (4, 8), (22, 30)]
    ci = CheckIn(7, "fdm-01", "aigerim", "acme", "ore", 0, 100, "api", "tech", "tech", 10.0, 12.5)
    e = checkin_entry(ci, running=[(10, 50)], jobs=[(20, 40)], job_energy_kwh=2.0)
    assert (e.key, e.source, e.segment, e.running, e.reserved, e.energy_kwh) == (
        "checkin/7", "checkin", 1, ((10, 20), (40, 50)), ((0, 10), (50, 100)), Decimal("0.5"))
    alone = checkin_entry(ci, running=[], jobs=[], job_energy_kwh=0.0)
    assert (alone.segment, alone.reserved, alone.energy_kwh) == (0, ((0, 100),), Decimal("2.5"))


def test_a_check_in_bills_reserved_time_running_time_and_energy(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = lab(tmp_path, clock)
    feed(live, clock, "fdm-01", state="idle", energy_kwh=100.0)
    live.tick()
    ci = ops.usage.checkins.check_in("fdm-01", by="tech", user="aigerim")
    assert (ci.partner, ci.project, ci.energy_start_kwh) == ("acme", "ore", 0.0)  # counted from the first reading
    report(live, clock, 10, state="idle", energy_kwh=100.0)
    started = clock()
    report(live, clock, 20, state="printing", energy_kwh=100.4)  # no job signals: machine time, no job
    stopped = clock.step(10)
    feed(live, clock, "fdm-01", state="idle", energy_kwh=100.4)
    report(live, clock, 10, state="idle", energy_kwh=100.4)
    first_running = started + 10 * NS  # the first report that says printing
    done = ops.usage.checkins.check_out("fdm-01", by="tech")
    [entry] = ops.usage.entries()
    assert entry.key == f"checkin/{done.id}"
    assert entry.running == ((first_running, stopped),)
    assert entry.reserved == ((ci.start_ns, first_running), (stopped, done.end_ns))
    assert (entry.partner, entry.project, entry.user, entry.energy_kwh, entry.segment) == (
        "acme", "ore", "aigerim", Decimal("0.4"), 0)
    # priced by the printers' card: 20 min running and 20 min 10 s reserved, per started 15 minutes
    b = config(CHECKIN_BILLING).billing
    assert b is not None
    lines = price_entry(entry, billing=b, kind="printer", tier="industrial", timezone="Asia/Almaty",
                        currency="KZT")
    time = sum((ln.time for ln in lines), Decimal(0))
    reserved = sum((ln.reserved for ln in lines), Decimal(0))
    assert (time, reserved) == (Decimal("600.00"), Decimal("150.00"))  # 30 min x 1200/h; 30 min x 300/h
    assert sum((ln.energy for ln in lines), Decimal(0)) == Decimal("16.00")  # 0.4 kWh x 40
    # no job ran: the check-in is the unit of work (setup fee, and the minimum charge of 1000 topped up)
    assert sum((ln.amount for ln in lines), Decimal(0)) == Decimal("600") + 150 + 16 + 500 + 250
    # both ends are events on the machine's timeline
    rows = ops.store.query("SELECT type FROM events WHERE type IN ('check_in', 'check_out') ORDER BY id")
    assert [r["type"] for r in rows] == ["check_in", "check_out"]


def test_a_job_during_a_check_in_is_the_users_and_is_never_billed_twice(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = lab(tmp_path, clock)
    feed(live, clock, "fdm-01", state="idle", energy_kwh=5.0, job_id=0, job_file="")
    live.tick()
    ops.usage.checkins.check_in("fdm-01", by="tech", user="aigerim", project="tools")
    report(live, clock, 5, state="idle", energy_kwh=5.0, job_id=0, job_file="")
    start = clock.step(10)
    feed(live, clock, "fdm-01", state="printing", job_id=9, job_file="bracket.gcode", energy_kwh=5.0)
    report(live, clock, 30, state="printing", energy_kwh=5.9)
    end = clock.step(10)
    feed(live, clock, "fdm-01", state="finished", energy_kwh=6.0)
    report(live, clock, 5, state="idle", energy_kwh=6.1)
    done = ops.usage.checkins.check_out("fdm-01", by="aigerim")
    job, checkin = ops.usage.entries()
    # no rule names "bracket.gcode": the job is the checked-in user's, with the energy it used
    assert (job.key, job.partner, job.project, job.user, job.note) == (
        f"fdm-01/{start}/0", "acme", "tools", "aigerim", f"check-in {done.id} of aigerim")
    assert job.running == ((start, end),)
    assert job.energy_kwh == Decimal("1.0")
    # the check-in adds only what the job does not bill: reserved time around it, and energy outside it
    assert checkin.running == ()
    assert checkin.reserved == ((done.start_ns, start), (end, done.end_ns))
    assert (checkin.segment, checkin.energy_kwh) == (1, Decimal("0.1"))
    assert ops.usage.unattributed() == []


def test_badge_swipes_check_in_hand_over_and_check_out(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = lab(tmp_path, clock)
    feed(live, clock, "fdm-01", state="idle")
    feed(live, clock, "fdm-01", badge="04A1B2C3")  # aigerim
    [ci] = ops.usage.checkins.list(open_only=True)
    assert (ci.user, ci.partner, ci.via, ci.start_ns) == ("aigerim", "acme", "badge", clock())
    clock.step(600)
    feed(live, clock, "fdm-01", badge="0BEEF")  # daniyar takes over
    first, = ops.usage.checkins.list(machine="fdm-01", partner="acme")
    assert (first.end_ns, first.closed_by) == (clock(), "daniyar")
    [second] = ops.usage.checkins.list(open_only=True)
    assert (second.user, second.partner) == ("daniyar", "lab")
    clock.step(60)
    feed(live, clock, "fdm-01", badge="FFFF")  # nobody's badge: nothing changes
    assert ops.usage.checkins.unknown_badges == 1
    assert ops.usage.checkins.open_on("fdm-01") == second
    clock.step(60)
    feed(live, clock, "fdm-01", badge="0BEEF")  # daniyar again: checked out
    assert ops.usage.checkins.open_on("fdm-01") is None
    assert [(e.partner, e.reserved_ns) for e in ops.usage.entries()] == [("acme", 600 * NS), ("lab", 120 * NS)]


def test_a_forgotten_check_in_is_closed_at_the_limit(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = lab(tmp_path, clock)
    ci = ops.usage.checkins.check_in("fdm-01", by="tech", user="aigerim")
    for _ in range(80):  # 80 minutes of ticks; the limit is 1 h
        clock.step(60)
        live.tick()
    done = ops.usage.checkins.get(ci.id)
    assert (done.end_ns, done.via, done.closed_by) == (ci.start_ns + 3600 * NS, "api", "gateway")
    [entry] = ops.usage.entries()
    assert entry.reserved_ns == 3600 * NS


def test_check_in_errors(tmp_path: Path) -> None:
    clock = Clock()
    _, ops = lab(tmp_path, clock)
    c = ops.usage.checkins
    with pytest.raises(CheckInError, match=r'"nobody" is not a user under billing\.users'):
        c.check_in("fdm-01", by="tech", user="nobody")
    with pytest.raises(CheckInError, match='works for partner "acme", not "lab"'):
        c.check_in("fdm-01", by="tech", user="aigerim", partner="lab")
    with pytest.raises(CheckInError, match='"tools" is not a project of partner "lab"'):
        c.check_in("fdm-01", by="admin", partner="lab", project="tools")
    with pytest.raises(NotCheckedIn, match="fdm-01 is not checked in"):
        c.check_out("fdm-01", by="tech")
    c.check_in("fdm-01", by="admin", partner="lab")
    with pytest.raises(AlreadyCheckedIn, match="checked in already"):
        c.check_in("fdm-01", by="tech", user="aigerim")


ADMIN, TECH, VIEW, ACME, LAB = ("admin-token-0123456789", "tech-token-0123456789", "view-token-0123456789",
                                "acme-token-0123456789", "lab-token-01234567890")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    live, ops = lab(tmp_path, Clock())
    app = create_app(ApiContext(
        site_id="krg", site_name="Kartech hub", machines=live.stage, metrics=Metrics(), history=None, health=dict,
        tokens={ADMIN: ("hub-it", "admin"), TECH: ("tech", "technician"), VIEW: ("wall", "viewer"),
                ACME: ("acme-portal", "partner"), LAB: ("lab-portal", "partner")},
        partners={ACME: "acme", LAB: "lab"}, services=ops))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_check_in_over_http(client: TestClient) -> None:
    def post(token: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
        r = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        return r.status_code, r.json()

    assert post(VIEW, "/api/v1/machines/fdm-01/checkin", {"user": "aigerim"})[0] == 403
    assert post(LAB, "/api/v1/machines/fdm-01/checkin", {"user": "aigerim"})[0] == 403  # another partner's user
    assert post(TECH, "/api/v1/machines/fdm-01/checkin", {"partner": "acme"})[0] == 403  # admins only
    code, body = post(TECH, "/api/v1/machines/fdm-01/checkin", {"user": "nobody"})
    assert (code, "not a user" in str(body["detail"])) == (400, True)
    assert post(TECH, "/api/v1/machines/nope/checkin", {"user": "aigerim"})[0] == 404
    code, body = post(ACME, "/api/v1/machines/fdm-01/checkin", {"user": "aigerim"})
    assert (code, body["user"], body["partner"], body["project"], body["end"], body["by"]) == (
        201, "aigerim", "acme", "ore", None, "acme-portal")
    assert post(TECH, "/api/v1/machines/fdm-01/checkin", {"user": "daniyar"})[0] == 409
    assert post(LAB, "/api/v1/machines/fdm-01/checkout")[0] == 403  # not its check-in
    # a partner lists only its own check-ins; technicians all of them
    r = client.get("/api/v1/checkins?open=true", headers={"Authorization": f"Bearer {LAB}"})
    assert (r.status_code, r.json()) == (200, [])
    r = client.get("/api/v1/checkins", headers={"Authorization": f"Bearer {TECH}"})
    assert [c["user"] for c in r.json()] == ["aigerim"]
    code, body = post(TECH, "/api/v1/machines/fdm-01/checkout")
    assert (code, body["closed_by"]) == (200, "tech")
    assert body["end"] is not None
    assert post(TECH, "/api/v1/machines/fdm-01/checkout")[0] == 404
    r = client.get("/api/v1/usage?partner=acme", headers={"Authorization": f"Bearer {ACME}"})
    assert [e["source"] for e in r.json()["entries"]] == ["checkin"]
