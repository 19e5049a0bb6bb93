"""The role matrix: every route of the app (from its OpenAPI document, and the pages beside it) asked by every
role — nobody, a kiosk, partner A, a technician, an admin — answers the status written here (and documented in
the OpenAPI document), and no answer to anyone but an admin carries another partner's data, in its body or its
headers. A route without an entry here
fails the test: a new endpoint is covered the day it is added.

The callers hold accounts' API tokens (gateway/accounts); the object asked about is partner B's wherever a route
names a partner. Unit tests of the dependencies in gateway/api/auth.py follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from kit.bill import config, month_entries
from kit.ops import Clock, build
from starlette.requests import HTTPConnection

from gateway.accounts.credentials import Passwords
from gateway.accounts.store import Accounts
from gateway.api.app import create_app
from gateway.api.auth import Principal, csrf_problem, login_redirect, page_principal
from gateway.api.context import ApiContext
from gateway.metrics import Metrics

ROLES = ("none", "kiosk", "partner", "technician", "admin")
# partner A is acme; partner B (lab) is the foreign one: its id in JSON, its name, its job names
FOREIGN = ('"partner":"lab"', "Materials lab", "LAB-tensile")
BILLING_DATA = (*FOREIGN, "ACME Mining", "ACME_")  # nobody but admins and the partner itself sees billing data


@dataclass(frozen=True)
class Case:
    path: str  # with {entry}, {token} filled from the fixture
    codes: tuple[int, int, int, int, int]  # none, kiosk, partner A, technician, admin
    body: Any = None


OPEN = 5 * (200,)
READ_BOARD = (401, 200, 403, 200, 200)  # kiosks and technicians read the board; partners do not
OPERATE = (401, 403, 403)  # + technician, admin
ADMIN_ONLY = (401, 403, 403, 403)  # + admin

# (method, path as the route declares it) -> cases; each role runs each case once, in this order
MATRIX: dict[tuple[str, str], list[Case]] = {
    ("POST", "/api/v1/login"): [Case("/api/v1/login", OPEN, {"name": "m-login", "password": "matrix password"})],
    ("POST", "/api/v1/kiosks/session"): [Case("/api/v1/kiosks/session", 5 * (401,), {"code": "AAAA-AAAA"})],
    ("GET", "/api/v1/me"): [Case("/api/v1/me", (401, 200, 200, 200, 200))],
    ("POST", "/api/v1/logout"): [Case("/api/v1/logout", (401, 204, 204, 204, 204))],
    # own credentials: not a kiosk's; changing the password and making tokens need the session (these callers
    # hold API tokens), listing and revoking do not; {token} is m-lab's, so anyone else's delete is a 404
    ("POST", "/api/v1/me/password"): [Case("/api/v1/me/password", (401, 403, 403, 403, 403),
                                           {"current": "matrix password", "new": "another matrix password"})],
    ("GET", "/api/v1/me/tokens"): [Case("/api/v1/me/tokens", (401, 403, 200, 200, 200))],
    ("POST", "/api/v1/me/tokens"): [Case("/api/v1/me/tokens", (401, 403, 403, 403, 403), {"label": "m"})],
    ("DELETE", "/api/v1/me/tokens/{token_id}"): [Case("/api/v1/me/tokens/{token}", (401, 403, 404, 404, 404))],
    ("GET", "/api/v1/users"): [Case("/api/v1/users", (*ADMIN_ONLY, 200))],
    ("POST", "/api/v1/users"): [Case("/api/v1/users", (*ADMIN_ONLY, 201),
                                     {"name": "m-new", "role": "partner", "partner": "lab"})],
    ("PUT", "/api/v1/users/{name}/role"): [Case("/api/v1/users/m-role/role", (*ADMIN_ONLY, 200),
                                                {"role": "partner", "partner": "acme"})],
    ("DELETE", "/api/v1/users/{name}"): [Case("/api/v1/users/m-gone", (*ADMIN_ONLY, 204))],
    ("POST", "/api/v1/users/{name}/tokens"): [Case("/api/v1/users/m-lab/tokens", (*ADMIN_ONLY, 201), {})],
    ("DELETE", "/api/v1/users/{name}/tokens/{token_id}"): [
        Case("/api/v1/users/m-lab/tokens/{token}", (*ADMIN_ONLY, 204))],
    ("POST", "/api/v1/kiosks/pair"): [Case("/api/v1/kiosks/pair", (*ADMIN_ONLY, 201), {"name": "m-wall"})],
    ("GET", "/api/v1/audit"): [Case("/api/v1/audit", (*ADMIN_ONLY, 200))],
    ("GET", "/api/v1/health"): [Case("/api/v1/health", OPEN)],
    ("GET", "/api/v1/machines"): [Case("/api/v1/machines", READ_BOARD)],
    ("GET", "/api/v1/machines/{machine_id}"): [Case("/api/v1/machines/fdm-01", READ_BOARD),
                                               Case("/api/v1/machines/nope", (401, 404, 403, 404, 404))],
    ("GET", "/api/v1/machines/{machine_id}/history"): [
        Case("/api/v1/machines/fdm-01/history?signal=state", (401, 503, 403, 503, 503))],  # no history store
    ("GET", "/metrics"): [Case("/metrics", READ_BOARD)],
    ("GET", "/api/v1/alerts"): [Case("/api/v1/alerts?state=all", READ_BOARD)],
    ("GET", "/api/v1/alerts/{alert_id}"): [Case("/api/v1/alerts/1", (401, 404, 403, 404, 404))],
    ("POST", "/api/v1/alerts/{alert_id}/ack"): [Case("/api/v1/alerts/1/ack", (*OPERATE, 404, 404), {"note": "x"})],
    ("POST", "/api/v1/alerts/{alert_id}/shelve"): [
        Case("/api/v1/alerts/1/shelve", (*OPERATE, 404, 404), {"duration_min": 5})],
    ("POST", "/api/v1/alerts/{alert_id}/unshelve"): [Case("/api/v1/alerts/1/unshelve", (*OPERATE, 404, 404))],
    ("GET", "/api/v1/events"): [Case("/api/v1/events", READ_BOARD)],
    ("GET", "/api/v1/maintenance"): [Case("/api/v1/maintenance", READ_BOARD)],
    ("GET", "/api/v1/maintenance/log"): [Case("/api/v1/maintenance/log", READ_BOARD)],
    ("POST", "/api/v1/maintenance/{machine}/{task}/done"): [
        Case("/api/v1/maintenance/fdm-01/nozzle/done", (*OPERATE, 404, 404), {"note": "x"})],
    ("PUT", "/api/v1/machines/{machine}/maintenance-mode"): [
        Case("/api/v1/machines/fdm-01/maintenance-mode", (*OPERATE, 200, 200), {"active": False})],
    ("GET", "/api/v1/oee"): [Case("/api/v1/oee?machine=fdm-01", READ_BOARD)],
    ("GET", "/api/v1/usage"): [Case("/api/v1/usage", (401, 403, 200, 403, 200)),
                               Case("/api/v1/usage?partner=lab", (401, 403, 403, 403, 200)),
                               Case("/api/v1/usage?unattributed=true", (401, 403, 403, 403, 200))],
    ("GET", "/api/v1/billing/statements/{partner}/{month}"): [
        Case("/api/v1/billing/statements/lab/2025-03", (401, 403, 403, 403, 200)),
        Case("/api/v1/billing/statements/lab/2025-03?format=pdf", (401, 403, 403, 403, 200)),
        Case("/api/v1/billing/statements/acme/2025-03", (401, 403, 200, 403, 200))],
    ("GET", "/api/v1/partners"): [Case("/api/v1/partners", (*ADMIN_ONLY, 200))],
    ("POST", "/api/v1/usage/{entry_id}/assign"): [
        Case("/api/v1/usage/{entry}/assign", (*ADMIN_ONLY, 200), {"partner": "lab"})],
    ("GET", "/api/v1/billing/months"): [Case("/api/v1/billing/months", (*ADMIN_ONLY, 200))],
    ("POST", "/api/v1/billing/months/{month}/close"): [
        Case("/api/v1/billing/months/2025-03/close", (*ADMIN_ONLY, 200))],
    # check-ins: technicians and admins for anyone, a partner for its own users (state carries over: acme's user
    # is checked in by the partner, so the others find the machine taken, and the partner checks out)
    ("POST", "/api/v1/machines/{machine}/checkin"): [
        Case("/api/v1/machines/fdm-01/checkin", (401, 403, 201, 409, 409), {"user": "aigerim"}),
        Case("/api/v1/machines/nope/checkin", (401, 404, 404, 404, 404), {"user": "aigerim"})],
    ("GET", "/api/v1/checkins"): [Case("/api/v1/checkins", (401, 403, 200, 200, 200))],
    ("POST", "/api/v1/machines/{machine}/checkout"): [
        Case("/api/v1/machines/fdm-01/checkout", (401, 403, 200, 404, 404))],
    # the billing catalog: admins only
    ("POST", "/api/v1/partners"): [Case("/api/v1/partners", (*ADMIN_ONLY, 201),
                                        {"id": "m-partner", "name": "Matrix partner", "tier": "startup"})],
    ("PATCH", "/api/v1/partners/{partner_id}"): [Case("/api/v1/partners/m-partner", (*ADMIN_ONLY, 200),
                                                      {"discount_pct": 5})],
    ("GET", "/api/v1/projects"): [Case("/api/v1/projects", (*ADMIN_ONLY, 200))],
    ("POST", "/api/v1/projects"): [Case("/api/v1/projects", (*ADMIN_ONLY, 201),
                                        {"id": "m-project", "partner": "m-partner", "name": "Matrix project"})],
    ("GET", "/api/v1/billing/users"): [Case("/api/v1/billing/users", (*ADMIN_ONLY, 200))],
    ("POST", "/api/v1/billing/users"): [Case("/api/v1/billing/users", (*ADMIN_ONLY, 201),
                                             {"id": "m-user", "name": "Matrix user", "partner": "m-partner"})],
    ("PATCH", "/api/v1/billing/users/{user_id}"): [Case("/api/v1/billing/users/m-user", (*ADMIN_ONLY, 200),
                                                        {"badges": ["0A0B0C0D"]})],
    ("GET", "/api/v1/rates"): [Case("/api/v1/rates", (*ADMIN_ONLY, 200))],
    ("POST", "/api/v1/rates"): [Case("/api/v1/rates", (*ADMIN_ONLY, 201),
                                     {"id": "m-rate", "kinds": ["furnace"], "per_running_hour": 100})],
    ("PATCH", "/api/v1/rates/{ref}"): [Case("/api/v1/rates/m-rate", (*ADMIN_ONLY, 200), {"per_running_hour": 120})],
    ("GET", "/api/v1/billing/changes"): [Case("/api/v1/billing/changes", (*ADMIN_ONLY, 200))],
    ("GET", "/api/v1/site"): [Case("/api/v1/site", (401, 200, 200, 200, 200))],
}

# routes outside the OpenAPI document: pages (no redirects followed: 303 is the way to the login page)
PAGES: dict[tuple[str, str], list[Case]] = {
    ("GET", "/"): [Case("/", (303, 200, 200, 200, 200))],
    ("GET", "/login"): [Case("/login", OPEN)],
    ("GET", "/pair"): [Case("/pair", OPEN)],
    ("GET", "/docs"): [Case("/docs", OPEN)],
    ("GET", "/favicon.ico"): [Case("/favicon.ico", OPEN)],
}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    live, ops = build(config(), tmp_path, Clock())
    assert ops.usage.ledger.add(month_entries()) == len(month_entries())
    app = create_app(ApiContext(site_id="krg", site_name="Test hub", machines=live.stage, metrics=Metrics(),
                                history=None, health=dict, tokens={}, services=ops))
    app.state.accounts.passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def tokens_of_roles(accounts: Accounts) -> dict[str, dict[str, str]]:
    headers = {"none": {}}
    for role, partner in [("kiosk", None), ("partner", "acme"), ("technician", None), ("admin", None)]:
        accounts.add_user(f"m-{role}", role, partner=partner, by="test")
        headers[role] = {"Authorization": f"Bearer {accounts.issue_token(f'm-{role}', by='test').secret}"}
    return headers


def routes_of(app: FastAPI) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(method, path) of the OpenAPI document, and of the other routes (pages)."""
    documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    # FastAPI 0.16x keeps included routers nested; iter_route_contexts flattens them as app.openapi() does
    flatten = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)
    pages = {(method, route.path) for route in flatten(app.routes)
             if isinstance(getattr(route, "original_route", route), APIRoute)
             for method in (route.methods or set()) - {"HEAD"}} - documented
    return documented, pages


def test_every_route_has_an_entry_in_the_matrix(app: FastAPI) -> None:
    documented, pages = routes_of(app)
    assert sorted(documented - set(MATRIX)) == [], "routes without an entry in MATRIX (add what each role gets)"
    assert sorted(set(MATRIX) - documented) == [], "MATRIX names routes the app does not have"
    assert sorted(pages - set(PAGES)) == [], "pages without an entry in PAGES"
    assert sorted(set(PAGES) - pages) == []


def test_every_role_gets_what_the_matrix_says_and_no_foreign_partners_data(app: FastAPI,
                                                                         client: TestClient) -> None:
    accounts: Accounts = app.state.accounts
    headers = tokens_of_roles(accounts)
    accounts.add_user("m-login", "technician", password="matrix password", by="test")
    for name in ("m-role", "m-gone"):
        accounts.add_user(name, "technician", by="test")
    accounts.add_user("m-lab", "partner", partner="lab", by="test")
    unattributed = {e.key for e in app.state.ctx.services.usage.ledger.unattributed()}
    fill = {"entry": next(i for i, e in app.state.ctx.services.usage.ledger.with_ids(unattributed=True)
                          if e.key in unattributed)}
    documented = app.openapi()["paths"]
    wrong: list[str] = []
    for (method, route), cases in {**MATRIX, **PAGES}.items():
        for case in cases:
            for role, expected in zip(ROLES, case.codes, strict=True):
                if "{token}" in case.path:  # a fresh token to revoke for each role
                    fill["token"] = accounts.issue_token("m-lab", by="test").id
                path = case.path.format(**fill)
                client.cookies.clear()  # a login answer's cookie must not speak for the next caller
                r = client.request(method, path, headers=headers[role], json=case.body)
                if r.status_code != expected:
                    wrong.append(f"{role:<10} {method} {path}: {r.status_code} (expected {expected}) {r.text[:120]}")
                promised = documented[route][method.lower()]["responses"] if (method, route) in MATRIX else None
                if promised is not None and str(r.status_code) not in promised:
                    wrong.append(f"{role:<10} {method} {path}: {r.status_code} is not in the OpenAPI document")
                if role == "admin":
                    continue
                seen = r.text + "".join(f"{k}: {v}\n" for k, v in r.headers.items())
                if r.headers.get("content-type") == "application/pdf":
                    seen = "".join(f"{k}: {v}\n" for k, v in r.headers.items())  # asked as admin only
                markers = FOREIGN if role == "partner" else BILLING_DATA
                leaked = [m for m in markers if m in seen]
                if leaked:
                    wrong.append(f"{role:<10} {method} {path}: shows {leaked}")
    assert wrong == []


def test_a_partner_sees_its_own_usage_and_nothing_of_the_other_partners(app: FastAPI, client: TestClient) -> None:
    headers = tokens_of_roles(app.state.accounts)["partner"]
    usage = client.get("/api/v1/usage", headers=headers).json()
    assert usage["partner"] == "acme"
    assert {e["partner"] for e in usage["entries"]} == {"acme"}
    assert "ACME_bracket.gcode" in str(usage)
    for path in ("/api/v1/usage?partner=lab", "/api/v1/billing/statements/lab/2025-03",
                 "/api/v1/billing/statements/lab/2025-03?partner=acme"):
        assert client.get(path, headers=headers).status_code == 403


# --- the dependencies -------------------------------------------------------------------------------------
def conn(method: str, headers: dict[str, str]) -> HTTPConnection:
    return HTTPConnection({"type": "http", "method": method, "path": "/x", "scheme": "http", "query_string": b"",
                           "headers": [(k.lower().encode(), v.encode()) for k, v in
                                       {"host": "gw.local:8080", **headers}.items()]})


@pytest.mark.parametrize(("method", "headers", "via", "problem"), [
    ("GET", {}, "session", None),
    ("HEAD", {}, "session", None),
    ("POST", {"X-CSRF-Token": "s3cret"}, "session", None),
    ("POST", {"X-CSRF-Token": "s3cret", "Origin": "http://gw.local:8080"}, "session", None),
    ("DELETE", {}, "session", "missing or wrong CSRF token"),
    ("PUT", {"X-CSRF-Token": "s3cre"}, "session", "missing or wrong CSRF token"),
    ("POST", {"X-CSRF-Token": "s3cret", "Origin": "http://gw.local"}, "session", "another origin"),
    ("POST", {"X-CSRF-Token": "s3cret", "Origin": "null"}, "session", "another origin"),
    ("POST", {}, "token", None),
    ("POST", {"Origin": "http://evil.example"}, "site-token", None),
])
def test_csrf_applies_to_unsafe_cookie_requests_only(method: str, headers: dict[str, str], via: Any,
                                                     problem: str | None) -> None:
    who = Principal("u", "admin", via=via, csrf="s3cret" if via == "session" else None)
    found = csrf_problem(conn(method, headers), who, method)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_the_login_redirect_comes_back_to_the_same_page_of_this_site_only(app: FastAPI,
                                                                         client: TestClient) -> None:
    got: dict[str, Any] = {}

    @app.get("/test-page")  # open only to bearer tokens (the Guard): what page_principal sees of them
    def test_page(request: Request) -> Response:
        got["who"] = page_principal(request)
        return login_redirect(request)

    headers = tokens_of_roles(app.state.accounts)["kiosk"]
    r = client.get("/test-page?machine=fdm-01&x=//evil", headers=headers)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/test-page%3Fmachine%3Dfdm-01%26x%3D//evil"
    assert got["who"] == Principal("m-kiosk", "kiosk", via="token")
