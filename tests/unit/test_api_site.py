"""GET /api/v1/site: the site's name and time zone and who the caller is, for every valid token (partners too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kit.bill import config
from kit.ops import Clock, Lab, build

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.machines import MachineMeta
from gateway.metrics import Metrics

ADMIN, ACME = "admin-token-0123456789", "acme-token-0123456789"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    live, ops = build(config(), tmp_path, Clock())
    app = create_app(ApiContext(
        site_id="krg", site_name="Kartech hub", machines=live.stage, metrics=Metrics(), history=None, health=dict,
        tokens={ADMIN: ("hub-it", "admin"), ACME: ("acme-portal", "partner")}, partners={ACME: "acme"},
        services=ops))
    with TestClient(app) as c:
        yield c


def test_the_site_zone_and_the_caller(client: TestClient) -> None:
    body = client.get("/api/v1/site", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert body == {"id": "krg", "name": "Kartech hub", "timezone": config().site.timezone,
                    "caller": {"name": "hub-it", "role": "admin", "partner": None, "partner_name": None}}


def test_a_partner_token_learns_its_own_partner_from_the_credential(client: TestClient) -> None:
    body = client.get("/api/v1/site?partner=lab", headers={"Authorization": f"Bearer {ACME}"}).json()
    partner = next(p for p in (config().billing or pytest.fail("no billing")).partners if p.id == "acme")
    assert body["caller"] == {"name": "acme-portal", "role": "partner", "partner": "acme",
                              "partner_name": partner.name}


def test_no_token_no_site(client: TestClient) -> None:
    assert client.get("/api/v1/site").status_code == 401
    assert client.get("/api/v1/site", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401


def test_without_operations_services_the_zone_is_utc() -> None:
    lab = Lab([MachineMeta("m1", "M1", "printer", "mqtt", "krg")])
    app = create_app(ApiContext(site_id="krg", site_name="Hub", machines=lab.stage, metrics=Metrics(),
                                tokens={ADMIN: ("it", "technician")}, history=None, health=dict))
    with TestClient(app) as c:
        body = c.get("/api/v1/site", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert body["timezone"] == "UTC"
    assert body["caller"]["role"] == "technician"
