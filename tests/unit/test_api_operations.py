"""The operations API: alerts (list, ack, shelve), maintenance (status, done, mode), events, OEE; roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.ops import Clock, build, feed, site

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.metrics import Metrics

TOKENS: dict[str, tuple[str, Any]] = {"a" * 20: ("alice", "admin"), "t" * 20: ("timur", "technician"),
                                      "v" * 20: ("bob", "viewer")}
ADMIN = {"Authorization": "Bearer " + "a" * 20}
TECH = {"Authorization": "Bearer " + "t" * 20}
VIEWER = {"Authorization": "Bearer " + "v" * 20}
PLANS = """
maintenance:
  plans:
    - {id: nozzle, name: Clean the nozzle, kinds: [printer], every: {running_h: 1}}
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Any, Clock]]:
    clock = Clock()
    live, ops = build(site(PLANS), tmp_path, clock)
    app = create_app(ApiContext(site_id="krg", site_name="Test", machines=live.stage, metrics=Metrics(), tokens=TOKENS,
                                history=None, health=dict, services=ops))
    with TestClient(app) as client:
        yield client, live, ops, clock


def test_alert_list_ack_and_clear_through_the_api(env: tuple[TestClient, Any, Any, Clock]) -> None:
    client, live, _, clock = env
    feed(live, clock, "cnc-01", state="alarm")
    alerts = client.get("/api/v1/alerts", headers=VIEWER).json()
    assert [(a["rule"], a["machine"], a["state"], a["severity"]) for a in alerts] == [
        ("machine-error", "cnc-01", "active_unacknowledged", "high")]
    aid = alerts[0]["id"]
    r = client.post(f"/api/v1/alerts/{aid}/ack", headers=VIEWER, json={"note": "x"})
    assert r.status_code == 403
    assert r.json() == {"detail": "role 'viewer' may not do this; needs one of: admin, technician"}
    r = client.post(f"/api/v1/alerts/{aid}/ack", headers=TECH, json={"note": "e-stop released"})
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["acknowledged_by"], r.json()["ack_note"]) == (
        "acknowledged", "timur", "e-stop released")
    clock.step(1)
    feed(live, clock, "cnc-01", state="Executing")
    assert client.get("/api/v1/alerts", headers=VIEWER).json() == []
    closed = client.get("/api/v1/alerts?state=closed", headers=VIEWER).json()
    assert [a["id"] for a in closed] == [aid]
    r = client.post(f"/api/v1/alerts/{aid}/ack", headers=TECH)
    assert r.status_code == 409
    assert r.json()["detail"].startswith(f"alert {aid} is closed since ")
    assert client.post("/api/v1/alerts/999/ack", headers=TECH).status_code == 404


def test_shelve_and_filters(env: tuple[TestClient, Any, Any, Clock]) -> None:
    client, live, _, clock = env
    feed(live, clock, "cnc-01", state="alarm")
    feed(live, clock, "fdm-01", state="error")
    by_machine = client.get("/api/v1/alerts?machine=fdm-01", headers=VIEWER).json()
    assert [a["machine"] for a in by_machine] == ["fdm-01"]
    aid = by_machine[0]["id"]
    r = client.post(f"/api/v1/alerts/{aid}/shelve", headers=ADMIN, json={"duration_min": 30, "note": "known"})
    assert (r.json()["state"], r.json()["shelved_by"]) == ("shelved", "alice")
    assert [a["machine"] for a in client.get("/api/v1/alerts?state=shelved", headers=VIEWER).json()] == ["fdm-01"]
    assert client.post(f"/api/v1/alerts/{aid}/shelve", headers=TECH, json={"duration_min": 0}).status_code == 422
    assert client.get("/api/v1/alerts?severity=critical", headers=VIEWER).json() == []
    assert client.get("/api/v1/alerts?state=nonsense", headers=VIEWER).status_code == 422
    assert client.post(f"/api/v1/alerts/{aid}/unshelve", headers=TECH).json()["state"] == "active_unacknowledged"


def test_maintenance_status_done_and_log(env: tuple[TestClient, Any, Any, Clock]) -> None:
    client, live, _, clock = env
    feed(live, clock, "fdm-01", state="printing")
    for _ in range(400):
        clock.step(10)
        feed(live, clock, "fdm-01", state="printing")
        live.tick()
    tasks = client.get("/api/v1/maintenance", headers=VIEWER).json()
    assert [(t["machine"], t["task"], t["status"]) for t in tasks] == [("fdm-01", "nozzle", "due")]
    r = client.post("/api/v1/maintenance/fdm-01/nozzle/done", headers=VIEWER)
    assert r.status_code == 403
    r = client.post("/api/v1/maintenance/fdm-01/nozzle/done", headers=TECH, json={"note": "cleaned"})
    assert (r.json()["status"], r.json()["last_done"]["by"], r.json()["last_done"]["note"]) == ("ok", "timur",
                                                                                                "cleaned")
    log = client.get("/api/v1/maintenance/log?machine=fdm-01", headers=VIEWER).json()
    assert [(e["task"], e["by"]) for e in log] == [("nozzle", "timur")]
    r = client.post("/api/v1/maintenance/fdm-01/belts/done", headers=TECH)
    assert (r.status_code, r.json()["detail"]) == (
        404, "machine 'fdm-01' has no maintenance task 'belts' (its tasks: nozzle)")
    assert client.post("/api/v1/maintenance/nope/nozzle/done", headers=TECH).status_code == 404
    assert client.get("/api/v1/maintenance?status=due", headers=VIEWER).json() == []


def test_maintenance_mode_events_and_oee(env: tuple[TestClient, Any, Any, Clock]) -> None:
    client, live, _, clock = env
    feed(live, clock, "cnc-01", state="Executing")
    r = client.put("/api/v1/machines/cnc-01/maintenance-mode", headers=TECH, json={"active": True, "note": "oil"})
    assert r.json()["state"] == "maintenance"
    assert client.get("/api/v1/machines/cnc-01", headers=VIEWER).json()["state"] == "maintenance"
    events = client.get("/api/v1/events?machine=cnc-01", headers=VIEWER).json()
    assert [(e["type"], e["data"].get("to")) for e in events] == [
        ("state", "maintenance"), ("maintenance_mode", None), ("state", "running")]
    oee = client.get("/api/v1/oee?machine=cnc-01", headers=VIEWER).json()
    assert [m["machine"] for m in oee["machines"]] == ["cnc-01"]
    assert oee["machines"][0]["shifts"][0]["shift"] == "day"
    r = client.get("/api/v1/oee?from=2026-11-19T00:00:00Z&to=2026-11-18T00:00:00Z", headers=VIEWER)
    assert (r.status_code, r.json()["detail"]) == (422, "'from' must be before 'to'")
    assert client.get("/api/v1/oee?from=yesterday", headers=VIEWER).json()["detail"] == (
        "from: 'yesterday' is not an ISO-8601 time; use e.g. 2026-11-26T09:00:00Z")


def test_without_operations_the_endpoints_say_so(tmp_path: Path) -> None:
    clock = Clock()
    live, _ = build(site(), tmp_path, clock)
    app = create_app(ApiContext(site_id="krg", site_name="Test", machines=live.stage, metrics=Metrics(), tokens=TOKENS,
                                history=None, health=dict))
    with TestClient(app) as client:
        r = client.get("/api/v1/alerts", headers=VIEWER)
        assert (r.status_code, r.json()["detail"]) == (503, "alerts and maintenance are not running here")
        assert client.get("/api/v1/alerts").status_code == 401
