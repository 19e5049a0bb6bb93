"""Billing over HTTP: usage, statements (CSV, HTML, PDF), partners and assigning unattributed usage — the
scripted month (kit.bill) in a real business store behind the real app; partner tokens see only their own."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kit.bill import BILLING, config, month_entries
from kit.ops import MACHINES, SPECS, Clock, build

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.billing.statement import build_statement, statement_csv
from gateway.config.loader import check_text
from gateway.metrics import Metrics

ADMIN, TECH, ACME, LAB = "admin-token-0123456789", "tech-token-0123456789", "acme-token-0123456789", \
    "lab-token-01234567890"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    live, ops = build(config(), tmp_path, Clock())
    assert ops.usage.ledger.add(month_entries()) == len(month_entries())
    app = create_app(ApiContext(
        site_id="krg", site_name="Kartech hub", machines=live.stage, metrics=Metrics(), history=None, health=dict,
        tokens={ADMIN: ("hub-it", "admin"), TECH: ("tech", "technician"), ACME: ("acme-portal", "partner"),
                LAB: ("lab-portal", "partner")},
        partners={ACME: "acme", LAB: "lab"}, services=ops))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def get(client: TestClient, token: str, path: str) -> tuple[int, bytes, str]:
    r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.content, r.headers.get("content-type", "")


def expected_csv(partner: str) -> bytes:
    b = config().billing
    assert b is not None
    kinds = {m.id: m.kind for m in config().machines}
    return statement_csv(build_statement(month_entries(), billing=b, partner=partner, month="2025-03", kinds=kinds,
                                         timezone="Asia/Almaty", currency="KZT")).encode()


def test_a_partner_reads_its_own_statement_and_not_another_partners(client: TestClient) -> None:
    code, body, ctype = get(client, ACME, "/api/v1/billing/statements/acme/2025-03")
    assert (code, ctype) == (200, "text/csv; charset=utf-8")
    assert body == expected_csv("acme")
    assert body.decode().splitlines()[-1] == "total,acme,2025-03,,,,,,,,,,,,,,,,,,,50266.44,KZT,,"
    code, body, _ = get(client, ACME, "/api/v1/billing/statements/lab/2025-03")
    assert code == 403
    assert b"reads only its own partner" in body
    assert get(client, LAB, "/api/v1/billing/statements/acme/2025-03?format=pdf")[0] == 403
    assert get(client, LAB, "/api/v1/billing/statements/lab/2025-03")[1] == expected_csv("lab")
    # admins read every partner's; other roles none
    assert get(client, ADMIN, "/api/v1/billing/statements/lab/2025-03")[1] == expected_csv("lab")
    assert get(client, TECH, "/api/v1/billing/statements/acme/2025-03")[0] == 403
    # and a partner token reads nothing else
    assert get(client, ACME, "/api/v1/machines")[0] == 403
    assert get(client, ACME, "/api/v1/alerts")[0] == 403
    assert get(client, ACME, "/api/v1/partners")[0] == 403


def test_statements_as_html_and_pdf(client: TestClient) -> None:
    code, body, ctype = get(client, ACME, "/api/v1/billing/statements/acme/2025-03?format=html&lang=en")
    assert (code, ctype) == (200, "text/html; charset=utf-8")
    assert b"Statement of usage" in body
    assert b">50266.44<" in body
    code, body, ctype = get(client, ACME, "/api/v1/billing/statements/acme/2025-03?format=pdf")
    assert (code, ctype) == (200, "application/pdf")
    assert body.startswith(b"%PDF-")
    assert get(client, ADMIN, "/api/v1/billing/statements/nobody/2025-03")[0] == 404
    for month in ("2025-13", "0000-01", "2999-12"):
        code, body, _ = get(client, ADMIN, f"/api/v1/billing/statements/acme/{month}")
        assert code == 422
        assert b"path parameter 'month'" in body
    assert get(client, ADMIN, "/api/v1/usage?month=2999-12")[0] == 422
    assert get(client, ADMIN, "/api/v1/billing/statements/acme/2199-12")[0] == 200


def test_usage_lists_only_the_callers_entries(client: TestClient) -> None:
    out = client.get("/api/v1/usage?month=2025-03", headers={"Authorization": f"Bearer {ACME}"}).json()
    assert out["partner"] == "acme"
    assert {e["partner"] for e in out["entries"]} == {"acme"}
    assert [e["key"] for e in out["entries"]] == [e.key for e in sorted(month_entries(), key=lambda e: (
        e.recorded_ns, e.key)) if e.partner == "acme"]  # in recorded order
    assert out["entries"][0]["start"] == "2025-03-03T05:00:00.000Z"
    assert get(client, ACME, "/api/v1/usage?partner=lab")[0] == 403
    assert get(client, ACME, "/api/v1/usage?unattributed=true")[0] == 403
    assert get(client, TECH, "/api/v1/usage")[0] == 403
    every = client.get("/api/v1/usage", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert len(every["entries"]) == len(month_entries())
    partners = client.get("/api/v1/partners", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [(p["id"], p["tier"], [x["id"] for x in p["projects"]]) for p in partners] == [
        ("acme", "industrial", ["ore", "tools"]), ("lab", "academic", [])]


def test_assigning_unattributed_usage_is_audited_and_billed(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    [entry] = client.get("/api/v1/usage?unattributed=true", headers=auth).json()["entries"]
    assert (entry["job"], entry["partner"]) == ("random.gcode", None)
    path = f"/api/v1/usage/{entry['id']}/assign"
    r = client.post(path, json={"partner": "acme", "project": "tools"},
                    headers={"Authorization": f"Bearer {ACME}"})
    assert r.status_code == 403
    r = client.post(path, json={"partner": "acme", "project": "nope"}, headers=auth)
    assert r.status_code == 422
    assert '"nope" is not a project of partner "acme"' in r.json()["detail"]
    assert client.post("/api/v1/usage/99999/assign", json={"partner": "acme"}, headers=auth).status_code == 404
    r = client.post(path, json={"partner": "acme", "project": "tools"}, headers=auth)
    assert r.status_code == 200, r.text
    rev, fixed = r.json()["reversal"], r.json()["replacement"]
    assert (rev["sign"], rev["reverses"], rev["by"], rev["source"]) == (-1, entry["key"], "hub-it", "assignment")
    assert (fixed["partner"], fixed["project"], fixed["note"]) == ("acme", "tools", "assigned to acme/tools by hub-it")
    assert client.post(path, json={"partner": "lab"}, headers=auth).status_code == 409
    assert client.get("/api/v1/usage?unattributed=true", headers=auth).json()["entries"] == []
    # the job is on ACME's statement now (30 min at 1200/h per started 15 min + setup fee + minimum charge)
    text = get(client, ACME, "/api/v1/billing/statements/acme/2025-03")[1].decode()
    lines = [r for r in csv.DictReader(io.StringIO(text)) if r["job"] == "random.gcode"]
    assert [(r["project"], r["billed_min"], r["amount"]) for r in lines] == [("tools", "30", "1500.00")]


def test_a_month_is_closed_once_after_its_end_by_an_admin_and_then_assignments_bill_the_next_month(
        client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    # the clock stands at 2026-11-18 12:00 in Asia/Almaty
    assert client.post("/api/v1/billing/months/2025-03/close", headers={"Authorization": f"Bearer {ACME}"}
                       ).status_code == 403
    for month in ("2026-11", "2027-01"):  # not over yet
        r = client.post(f"/api/v1/billing/months/{month}/close", headers=auth)
        assert r.status_code == 409
        assert "not over yet" in r.json()["detail"]
    assert client.post("/api/v1/billing/months/2025-13/close", headers=auth).status_code == 422
    before = get(client, ACME, "/api/v1/billing/statements/acme/2025-03")[1]
    r = client.post("/api/v1/billing/months/2025-03/close", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"month": "2025-03", "closed_at": "2026-11-18T07:00:00.000Z", "closed_by": "hub-it"}
    r = client.post("/api/v1/billing/months/2025-03/close", headers=auth)
    assert r.status_code == 409
    assert "closed already, at 2026-11-18T07:00:00.000Z by hub-it" in r.json()["detail"]
    assert client.get("/api/v1/billing/months", headers=auth).json() == [
        {"month": "2025-03", "closed_at": "2026-11-18T07:00:00.000Z", "closed_by": "hub-it"}]
    # usage assigned after the close does not change the closed month's statement
    [entry] = client.get("/api/v1/usage?unattributed=true", headers=auth).json()["entries"]
    assert client.post(f"/api/v1/usage/{entry['id']}/assign", json={"partner": "acme"}, headers=auth
                       ).status_code == 200
    assert get(client, ACME, "/api/v1/billing/statements/acme/2025-03")[1] == before


def test_partner_tokens_are_checked_with_the_config() -> None:
    base = "site: {id: krg, name: Test hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES
    env = {"T": "t" * 20}
    tokens = "api:\n  tokens:\n    - {name: acme-portal, token: '${T}', role: partner%s}\n"
    ok = check_text(base + BILLING + tokens % ", partner: acme", "site.yaml", SPECS, env)
    assert ok.problems == [], [str(p) for p in ok.problems]
    assert ok.config is not None
    assert ok.config.api.tokens[0].partner == "acme"
    missing = check_text(base + BILLING + tokens % "", "site.yaml", SPECS, env)
    assert "a token with role partner needs the partner it belongs to, e.g. partner: acme" in str(
        missing.problems[0])
    unknown = check_text(base + BILLING + tokens % ", partner: acmee", "site.yaml", SPECS, env)
    assert '"acmee" is not a known partner; did you mean "acme"?' in str(unknown.problems[0])
    assert unknown.problems[0].line == base.count("\n") + BILLING.count("\n") + 3
    viewer = check_text(base + BILLING + tokens.replace("partner%s", "viewer, partner: acme"), "site.yaml", SPECS,
                        env)
    assert "partner is only for tokens with role partner (this one has role viewer)" in str(viewer.problems[0])
