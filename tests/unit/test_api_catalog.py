"""Partners, projects, users and rate cards over HTTP: the real app on a real business store holding the scripted
month (kit.bill); admins change them, every other role is refused; refusals speak check-config's words; rate
changes re-price only from their valid_from and never a closed month; every change is in the audit."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.bill import config, month_entries
from kit.ops import Clock, build

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.metrics import Metrics

ADMIN, TECH, VIEWER, ACME = ("admin-token-0123456789", "tech-token-0123456789", "viewer-token-012345678",
                             "acme-token-0123456789")
ROLES = {ADMIN: ("hub-it", "admin"), TECH: ("tech", "technician"), VIEWER: ("board", "viewer"),
         ACME: ("acme-portal", "partner")}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    live, ops = build(config(), tmp_path, Clock())  # the clock stands at 2026-11-18 12:00 in Asia/Almaty
    assert ops.usage.ledger.add(month_entries()) == len(month_entries())
    app = create_app(ApiContext(
        site_id="krg", site_name="Kartech hub", machines=live.stage, metrics=Metrics(), history=None, health=dict,
        tokens=dict(ROLES), partners={ACME: "acme"}, services=ops))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def call(client: TestClient, method: str, path: str, body: dict[str, Any] | None = None,
         token: str = ADMIN) -> tuple[int, Any]:
    r = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def statement(client: TestClient, month: str) -> list[dict[str, str]]:
    code, text = call(client, "GET", f"/api/v1/billing/statements/acme/{month}")
    assert code == 200
    return list(csv.DictReader(io.StringIO(text)))


ROUTES = [
    ("GET", "/api/v1/partners", None),
    ("POST", "/api/v1/partners", {"id": "qarmet", "name": "Qarmet R&D", "tier": "industrial"}),
    ("PATCH", "/api/v1/partners/lab", {"discount_pct": 5}),
    ("GET", "/api/v1/projects", None),
    ("POST", "/api/v1/projects", {"id": "slag", "partner": "lab", "name": "Slag"}),
    ("GET", "/api/v1/billing/users", None),
    ("POST", "/api/v1/billing/users", {"id": "dana", "name": "Dana K.", "partner": "lab"}),
    ("PATCH", "/api/v1/billing/users/aigerim", {"badges": ["FFEE0011"]}),
    ("GET", "/api/v1/rates", None),
    ("POST", "/api/v1/rates", {"machines": ["plug-01"], "per_running_hour": 3000}),
    ("PATCH", "/api/v1/rates/rate-2", {"setup_fee": 2500}),
    ("GET", "/api/v1/billing/changes", None),
]


def test_only_admins_manage_the_catalog(client: TestClient) -> None:
    for token, (_, role) in ROLES.items():
        if token == ADMIN:
            continue
        for method, path, body in ROUTES:
            code, out = call(client, method, path, body, token)
            assert code == 403, (role, method, path)
            assert ("partner token reads only its own" if role == "partner" else f"role '{role}' may not do this"
                    ) in out["detail"]
    assert call(client, "GET", "/api/v1/billing/changes")[1] == []  # nothing was changed by the refused calls
    for method, path, body in ROUTES:
        code, out = call(client, method, path, body)
        assert code == (201 if method == "POST" else 200), (method, path, out)
    assert [c["item"] for c in call(client, "GET", "/api/v1/billing/changes")[1]] == [
        "qarmet", "lab", "slag", "dana", "aigerim", "rate-3", "rate-2"]


def test_partners_projects_and_users_are_added_and_patched(client: TestClient) -> None:
    code, out = call(client, "POST", "/api/v1/partners", {"id": "qarmet", "name": "Qarmet R&D", "tier": "industrial",
                                                          "discount_pct": "7.5"})
    assert (code, out) == (201, {"id": "qarmet", "name": "Qarmet R&D", "tier": "industrial", "discount_pct": "7.5",
                                 "projects": []})
    assert call(client, "POST", "/api/v1/projects", {"id": "slag", "partner": "qarmet", "name": "Slag"}) == (
        201, {"id": "slag", "partner": "qarmet", "name": "Slag"})
    code, out = call(client, "POST", "/api/v1/billing/users", {"id": "dana", "name": "Dana K.", "partner": "qarmet",
                                                               "project": "slag", "badges": ["0A0B0C0D"]})
    assert (code, out["badges"]) == (201, ["0A0B0C0D"])
    code, out = call(client, "PATCH", "/api/v1/partners/acme", {"tier": "startup"})
    assert (code, out["tier"], out["discount_pct"], [p["id"] for p in out["projects"]]) == (
        200, "startup", "10", ["ore", "tools"])
    assert call(client, "PATCH", "/api/v1/billing/users/dana", {"project": None})[1]["project"] is None
    partners = call(client, "GET", "/api/v1/partners")[1]
    assert [(p["id"], p["tier"], [x["id"] for x in p["projects"]]) for p in partners] == [
        ("acme", "startup", ["ore", "tools"]), ("lab", "academic", []), ("qarmet", "industrial", ["slag"])]
    assert [u["id"] for u in call(client, "GET", "/api/v1/billing/users")[1]] == ["aigerim", "dana"]
    assert [p["id"] for p in call(client, "GET", "/api/v1/projects")[1]] == ["ore", "tools", "slag"]
    # an admin assigns unattributed usage to the new partner at once
    [entry] = call(client, "GET", "/api/v1/usage?unattributed=true")[1]["entries"]
    code, out = call(client, "POST", f"/api/v1/usage/{entry['id']}/assign", {"partner": "qarmet", "project": "slag"})
    assert (code, out["replacement"]["partner"]) == (200, "qarmet")
    # and checks the new user in to a machine: check-ins read the users in effect
    code, out = call(client, "POST", "/api/v1/machines/fdm-01/checkin", {"user": "dana"})
    assert (code, out["partner"], out["project"]) == (201, "qarmet", None), out
    # the audit
    changes = call(client, "GET", "/api/v1/billing/changes")[1]
    assert [(c["list"], c["item"], c["op"], c["by"], c["valid_from"]) for c in changes] == [
        ("partners", "qarmet", "add", "hub-it", None), ("projects", "slag", "add", "hub-it", None),
        ("users", "dana", "add", "hub-it", None),
        ("partners", "acme", "patch", "hub-it", "2026-11-18T07:00:00.000Z"),
        ("users", "dana", "patch", "hub-it", "2026-11-18T07:00:00.000Z")]
    assert (changes[3]["at"], changes[3]["fields"], changes[3]["before"]["tier"], changes[3]["after"]["tier"]) == (
        "2026-11-18T07:00:00.000Z", {"tier": "startup"}, "industrial", "startup")
    assert [c["item"] for c in call(client, "GET", "/api/v1/billing/changes?list=users")[1]] == ["dana", "dana"]


def test_refusals_say_what_and_where(client: TestClient) -> None:
    code, out = call(client, "POST", "/api/v1/partners", {"id": "x", "name": "X", "tier": "gold"})
    assert (code, out["detail"]) == (422, 'refused: billing.partners[2].tier: "gold" is not allowed; use one of '
                                          "academic, startup, industrial")
    code, out = call(client, "PATCH", "/api/v1/partners/lab", {"discount_pct": 101})
    assert (code, out["detail"]) == (422, "refused: billing.partners[1].discount_pct: 101 is out of range: input "
                                          "should be less than or equal to 100")
    code, out = call(client, "POST", "/api/v1/billing/users", {"id": "u", "name": "U", "partner": "acme",
                                                               "badges": ["04A1B2C3"]})
    assert (code, out["detail"]) == (422, 'refused: billing.users[1].badges[0]: "04A1B2C3" is already the badge of '
                                          'user "aigerim"')
    code, out = call(client, "POST", "/api/v1/rates", {"kinds": ["printer"], "per_running_hour": 1,
                                                       "material": "abs"})
    assert (code, out["detail"]) == (422, 'refused: billing.rates[2].material: "abs" is not a known material; '
                                          "(known: pla)")
    assert call(client, "POST", "/api/v1/partners", {"id": "acme", "name": "A", "tier": "startup"}) == (
        409, {"detail": 'partner "acme" exists already; change it with PATCH /api/v1/partners/acme'})
    assert call(client, "PATCH", "/api/v1/partners/nobody", {"name": "N"}) == (
        404, {"detail": 'no partner "nobody" (known: acme, lab)'})
    assert call(client, "PATCH", "/api/v1/rates/7", {"setup_fee": 1}) == (
        404, {"detail": 'no rate card "7" (known: rate-1, rate-2)'})
    code, out = call(client, "PATCH", "/api/v1/partners/lab", {"id": "lab2"})
    assert (code, out["detail"]) == (422, "body 'id': Extra inputs are not permitted")
    code, out = call(client, "PATCH", "/api/v1/rates/rate-1", {"per_running_hour": "a lot"})
    assert (code, out["detail"]) == (422, "body 'per_running_hour': Input should be a valid decimal")
    assert call(client, "PATCH", "/api/v1/rates/rate-1", {"valid_from": "soon", "setup_fee": 1})[0] == 422
    assert call(client, "GET", "/api/v1/billing/changes")[1] == []


def test_rate_changes_apply_from_valid_from_and_never_inside_a_closed_month(client: TestClient) -> None:
    golden = statement(client, "2025-03")
    rates = call(client, "GET", "/api/v1/rates")[1]
    assert [(r["id"], r["kinds"], r["machines"], r["per_running_hour"], r["valid_from"]) for r in rates] == [
        ("rate-1", ["printer"], [], "1200", None), ("rate-2", [], ["cnc-01"], "9000", None)]
    # printers at 2400/h from 2025-03-20 00:00 Almaty: J4 and J5 (started after) are re-priced, J1 is not
    code, out = call(client, "PATCH", "/api/v1/rates/0", {"per_running_hour": 2400,
                                                          "valid_from": "2025-03-20T00:00:00+05:00"})
    assert (code, out["id"], out["per_running_hour"], out["valid_from"]) == (
        200, "rate-1", "2400", "2025-03-19T19:00:00.000Z")
    lines = {(r["job"], r["rate_per_hour"], r["amount"]) for r in statement(client, "2025-03")
             if r["row"] == "line" and r["machine"] == "fdm-01"}
    assert lines == {("ACME_bracket.gcode", "1200.00", "3945.00"), ("ACME_cover.gcode", "2400.00", "5300.00"),
                     ("ACME_housing.gcode", "2400.00", "5672.50")}
    assert [r["per_running_hour"] for r in call(client, "GET", "/api/v1/rates?at=2025-03-19T18:59:59Z")[1]] == [
        "1200", "9000"]
    # close March: its statement is final; no change may take effect inside it any more
    assert call(client, "POST", "/api/v1/billing/months/2025-03/close")[0] == 200
    closed = statement(client, "2025-03")
    code, out = call(client, "PATCH", "/api/v1/rates/rate-1", {"per_running_hour": 100,
                                                               "valid_from": "2025-03-25T00:00:00+05:00"})
    assert code == 409
    assert out["detail"].startswith("valid_from 2025-03-24T19:00:00.000Z is not after the closed month 2025-03")
    assert call(client, "POST", "/api/v1/rates", {"kinds": ["printer"], "per_running_hour": 1,
                                                  "valid_from": "2025-01-01T00:00:00Z"})[0] == 409
    # without valid_from a change applies from now; a new card for a machine wins over the kind's
    code, out = call(client, "POST", "/api/v1/rates", {"id": "fdm-01-special", "machines": ["fdm-01"],
                                                       "per_running_hour": 99})
    assert (code, out["valid_from"]) == (201, "2026-11-18T07:00:00.000Z")
    assert call(client, "PATCH", "/api/v1/partners/acme", {"discount_pct": 50})[0] == 200
    assert statement(client, "2025-03") == closed
    assert closed != golden
    assert [r["id"] for r in call(client, "GET", "/api/v1/rates")[1]] == ["rate-1", "rate-2", "fdm-01-special"]


def test_the_routes_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for method, path in (("get", "/api/v1/partners"), ("post", "/api/v1/partners"),
                         ("patch", "/api/v1/partners/{partner_id}"), ("get", "/api/v1/projects"),
                         ("post", "/api/v1/projects"), ("get", "/api/v1/billing/users"),
                         ("post", "/api/v1/billing/users"), ("patch", "/api/v1/billing/users/{user_id}"),
                         ("get", "/api/v1/rates"), ("post", "/api/v1/rates"), ("patch", "/api/v1/rates/{ref}"),
                         ("get", "/api/v1/billing/changes")):
        op = spec["paths"][path][method]
        assert op["tags"] == ["billing admin"]
        assert {"401", "403", "422"} <= set(op["responses"]), (method, path)
    schema = spec["components"]["schemas"]["PartnerIn"]["properties"]["tier"]
    assert schema["enum"] == ["academic", "startup", "industrial"]
    assert "which tier prices" in schema["description"]
