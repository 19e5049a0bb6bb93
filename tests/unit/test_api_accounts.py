"""Accounts over HTTP: logging in with the session cookie (flags, expiry, logout, revocation), CSRF on
cookie-authenticated unsafe requests, the failed-login limits, users and tokens for admins, a user's own password
and tokens, kiosk pairing, the login redirect of the page and the WebSocket's session cookie — the real app on a
real business store, with the services' clock stepped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kit.bill import config
from kit.ops import Clock, build
from starlette.websockets import WebSocketDisconnect

from gateway.accounts.credentials import Passwords
from gateway.accounts.store import Accounts
from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.metrics import Metrics

SITE_ADMIN = "site-admin-token-0123456789"
ADMIN_HEADERS = {"Authorization": f"Bearer {SITE_ADMIN}"}
PASSWORD = "correct horse battery"
# a cheap argon2id: these tests are about what happens around a hash, not about its cost
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> FastAPI:
    live, ops = build(config(), tmp_path, clock)
    app = create_app(ApiContext(site_id="krg", site_name="Test hub", machines=live.stage, metrics=Metrics(),
                                history=None, health=dict, tokens={SITE_ADMIN: ("hub-it", "admin")},
                                services=ops))
    app.state.accounts.passwords = FAST
    return app


@pytest.fixture
def accounts(app: FastAPI) -> Accounts:
    accounts: Accounts = app.state.accounts
    for name, role, partner in [("alice", "admin", None), ("timur", "technician", None),
                                ("acme-user", "partner", "acme")]:
        accounts.add_user(name, role, partner=partner, password=PASSWORD, by="test")
    return accounts


@pytest.fixture
def client(app: FastAPI, accounts: Accounts) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def login(client: TestClient, name: str = "timur", password: str = PASSWORD, **headers: str) -> Any:
    return client.post("/api/v1/login", json={"name": name, "password": password}, headers=headers)


def cookie_attributes(response: Any) -> dict[str, str]:
    """The attributes of the session cookie set by a response, names lower-cased."""
    header = next(v for k, v in response.headers.multi_items() if k == "set-cookie"
                  and v.startswith("kartech_session="))
    first, *rest = header.split(";")
    attrs = {"value": first.split("=", 1)[1]}
    for part in rest:
        key, _, value = part.strip().partition("=")
        attrs[key.lower()] = value
    return attrs


# --- logging in -------------------------------------------------------------------------------------------
def test_login_sets_an_httponly_strict_session_cookie_and_me_names_the_user(client: TestClient) -> None:
    r = login(client)
    assert r.status_code == 200
    body = r.json()
    assert (body["name"], body["role"], body["partner"]) == ("timur", "technician", None)
    cookie = cookie_attributes(r)
    assert {k: cookie.get(k) for k in ("httponly", "samesite", "path", "max-age")} == {
        "httponly": "", "samesite": "strict", "path": "/", "max-age": str(12 * 3600)}
    assert "secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    me = client.get("/api/v1/me").json()
    assert me == {"name": "timur", "role": "technician", "partner": None, "via": "session",
                  "csrf_token": body["csrf_token"]}
    assert client.get("/api/v1/machines").status_code == 200


def test_over_tls_the_cookie_is_secure(app: FastAPI, accounts: Accounts) -> None:
    with TestClient(app, base_url="https://testserver") as tls:
        r = login(tls)
        assert r.status_code == 200
        assert "secure" in cookie_attributes(r)
        assert tls.get("/api/v1/me").json()["name"] == "timur"


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient, accounts: Accounts) -> None:
    wrong, unknown = login(client, password="not the password"), login(client, name="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "wrong user name or password"}
    assert "set-cookie" not in wrong.headers
    failed = accounts.audit_log(action="login_failed")
    assert [(e["actor"], e["address"]) for e in failed] == [("nobody", "testclient"), ("timur", "testclient")]


def test_the_session_expires_and_logout_ends_it_on_the_server(client: TestClient, clock: Clock) -> None:
    login(client)
    session = client.cookies["kartech_session"]
    clock.step(12 * 3600 - 1)
    assert client.get("/api/v1/me").status_code == 200
    clock.step(1)
    expired = client.get("/api/v1/me")
    assert expired.status_code == 401
    assert expired.json() == {"detail": "the session has ended or expired: log in again at /login"}

    csrf = login(client).json()["csrf_token"]
    session = client.cookies["kartech_session"]
    out = client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert "kartech_session" not in client.cookies
    client.cookies.set("kartech_session", session)  # a copy kept of the cookie is of no use now
    assert client.get("/api/v1/me").status_code == 401


def test_a_revoked_user_or_a_role_change_ends_its_sessions_at_once(client: TestClient, app: FastAPI) -> None:
    login(client)
    assert client.get("/api/v1/me").status_code == 200
    with TestClient(app) as admin:
        changed = admin.put("/api/v1/users/timur/role", json={"role": "kiosk"}, headers=ADMIN_HEADERS)
        assert changed.status_code == 200
        assert changed.json()["role"] == "kiosk"
        assert client.get("/api/v1/me").status_code == 401
        login(client)
        assert client.get("/api/v1/me").json()["role"] == "kiosk"
        assert admin.delete("/api/v1/users/timur", headers=ADMIN_HEADERS).status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    assert login(client).status_code == 401


# --- CSRF -------------------------------------------------------------------------------------------------
def test_a_cookie_authenticated_unsafe_request_needs_the_csrf_token(client: TestClient) -> None:
    csrf = login(client, "alice").json()["csrf_token"]
    body = {"name": "wall-9"}
    missing = client.post("/api/v1/kiosks/pair", json=body)
    assert missing.status_code == 403
    assert missing.json() == {"detail": "missing or wrong CSRF token: send the X-CSRF-Token header given by "
                                        "GET /api/v1/me"}
    assert client.post("/api/v1/kiosks/pair", json=body, headers={"X-CSRF-Token": csrf[:-1] + "x"}).status_code \
        == 403
    foreign = client.post("/api/v1/kiosks/pair", json=body,
                          headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert foreign.json() == {"detail": "a request from another origin is refused"}
    ok = client.post("/api/v1/kiosks/pair", json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"})
    assert ok.status_code == 201
    # safe requests need none
    assert client.get("/api/v1/users").status_code == 200


def test_bearer_requests_are_not_subject_to_csrf_even_beside_a_cookie(client: TestClient) -> None:
    login(client)  # a technician's cookie in the jar; the header decides alone
    r = client.post("/api/v1/kiosks/pair", json={"name": "wall-2"}, headers=ADMIN_HEADERS)
    assert r.status_code == 201
    assert client.get("/api/v1/me", headers=ADMIN_HEADERS).json()["via"] == "site-token"
    bad = client.get("/api/v1/me", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401  # a bad header is not rescued by the cookie
    assert bad.json() == {"detail": "invalid token"}


def test_a_login_from_a_page_of_another_origin_is_refused(client: TestClient) -> None:
    r = login(client, Origin="http://evil.example")
    assert r.status_code == 403
    assert "set-cookie" not in r.headers


# --- failed-login limits ----------------------------------------------------------------------------------
def test_failed_logins_of_one_user_are_limited_with_retry_after(client: TestClient, clock: Clock) -> None:
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
    locked = login(client)  # even the right password now waits
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == str(15 * 60)
    assert locked.json() == {"detail": "too many failed attempts: try again in 900 s"}
    assert login(client, "alice").status_code == 200  # another user of the same address is not locked out
    clock.step(15 * 60 - 10)
    assert login(client).headers["retry-after"] == "10"
    clock.step(10)
    assert login(client).status_code == 200


def test_failed_logins_from_one_address_are_limited(client: TestClient, clock: Clock) -> None:
    for i in range(20):
        assert login(client, f"guess-{i}", "guess").status_code == 401
    r = login(client)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) == 15 * 60


# --- users and tokens -------------------------------------------------------------------------------------
def test_an_admin_adds_a_user_whose_token_is_shown_once_and_stored_hashed(client: TestClient, tmp_path: Path,
                                                                         accounts: Accounts) -> None:
    r = client.post("/api/v1/users", headers=ADMIN_HEADERS,
                    json={"name": "exporter", "role": "technician", "token_label": "nightly", "token_days": 7})
    assert r.status_code == 201
    token = r.json()["token"]["token"]
    assert token.startswith("kgt_")
    assert len(token) > 40
    assert r.json()["user"]["tokens"] == [{"id": r.json()["token"]["id"], "label": "nightly",
                                           "created": "2026-11-18T07:00:00.000Z",
                                           "expires": "2026-11-25T07:00:00.000Z", "revoked": None,
                                           "last_used": None}]
    listed = client.get("/api/v1/users", headers=ADMIN_HEADERS)
    assert token not in listed.text
    assert [u["name"] for u in listed.json()] == ["acme-user", "alice", "exporter", "timur"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"name": "exporter", "role": "technician", "partner": None, "via": "token", "csrf_token": None}
    accounts.store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("business.sqlite*"))
    assert token.encode() not in stored
    assert PASSWORD.encode() not in stored
    assert b"$argon2id$" in stored


def test_tokens_expire_and_are_revoked(client: TestClient, clock: Clock) -> None:
    made = client.post("/api/v1/users/timur/tokens", json={"label": "short", "days": 1}, headers=ADMIN_HEADERS)
    assert made.status_code == 201
    short = {"Authorization": f"Bearer {made.json()['token']}"}
    other = client.post("/api/v1/users/timur/tokens", json={}, headers=ADMIN_HEADERS).json()
    long = {"Authorization": f"Bearer {other['token']}"}
    assert client.get("/api/v1/machines", headers=short).status_code == 200
    clock.step(86_400)
    assert client.get("/api/v1/machines", headers=short).status_code == 401
    assert client.get("/api/v1/machines", headers=long).status_code == 200
    assert client.delete(f"/api/v1/users/timur/tokens/{other['id']}", headers=ADMIN_HEADERS).status_code == 204
    assert client.get("/api/v1/machines", headers=long).status_code == 401
    assert client.delete(f"/api/v1/users/alice/tokens/{other['id']}", headers=ADMIN_HEADERS).status_code == 404


def test_token_use_is_audited_once_a_day(client: TestClient, clock: Clock, accounts: Accounts) -> None:
    token = client.post("/api/v1/users/timur/tokens", json={}, headers=ADMIN_HEADERS).json()["token"]
    for _ in range(3):
        assert client.get("/api/v1/machines", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert len(accounts.audit_log(action="token_used")) == 1
    clock.step(86_400)
    client.get("/api/v1/machines", headers={"Authorization": f"Bearer {token}"})
    client.get("/api/v1/machines", headers={"Authorization": f"Bearer {token}"})
    assert len(accounts.audit_log(action="token_used")) == 2


def test_user_mistakes_are_answered_clearly(client: TestClient) -> None:
    def add(**body: Any) -> Any:
        return client.post("/api/v1/users", json={"name": "x-1", "role": "partner", **body}, headers=ADMIN_HEADERS)

    assert add().json() == {"detail": "a partner account needs its partner (one of billing.partners)"}
    assert add(partner="nobody").json() == {"detail": "unknown partner 'nobody'; billing.partners has: acme, lab"}
    assert add(partner="acme", password="short").json() == {"detail": "a password needs at least 10 characters"}
    assert add(partner="acme").status_code == 201
    assert add(partner="acme").status_code == 409
    assert client.delete("/api/v1/users/ghost", headers=ADMIN_HEADERS).status_code == 404


def test_role_changes_and_logins_are_in_the_audit_log(client: TestClient) -> None:
    login(client)
    client.put("/api/v1/users/timur/role", json={"role": "partner", "partner": "lab"}, headers=ADMIN_HEADERS)
    log = client.get("/api/v1/audit", headers=ADMIN_HEADERS).json()
    assert [(e["action"], e["actor"], e["target"]) for e in log[:2]] == [
        ("role_changed", "hub-it", "timur"), ("login", "timur", "timur")]
    assert log[0]["detail"] == {"from": "technician", "from_partner": None, "to": "partner", "to_partner": "lab"}



# --- own password and tokens ------------------------------------------------------------------------------
def signed_in(client: TestClient, name: str = "timur", password: str = PASSWORD) -> dict[str, str]:
    """Sign `client` in; the CSRF header of its session."""
    r = login(client, name, password)
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def change(client: TestClient, csrf: dict[str, str], current: str, new: str) -> Any:
    return client.post("/api/v1/me/password", json={"current": current, "new": new}, headers=csrf)


def test_a_user_changes_their_password_and_their_other_sessions_end(client: TestClient, app: FastAPI,
                                                                   accounts: Accounts) -> None:
    token = accounts.issue_token("timur", by="test").secret
    with TestClient(app) as phone:
        signed_in(phone)
        csrf = signed_in(client)
        r = change(client, csrf, PASSWORD, "a new long password")
        assert r.status_code == 204
        assert client.get("/api/v1/me").status_code == 200  # this session stays
        assert phone.get("/api/v1/me").status_code == 401  # the other one ended
    assert client.get("/api/v1/machines", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert login(client, password=PASSWORD).status_code == 401
    assert login(client, password="a new long password").status_code == 200
    entry = accounts.audit_log(action="password_set")[0]
    assert (entry["actor"], entry["target"], entry["address"], entry["detail"]) == (
        "timur", "timur", "testclient", {"sessions_ended": 1})


def test_a_wrong_current_password_is_refused_and_counted_as_a_failed_login(client: TestClient, clock: Clock,
                                                                          accounts: Accounts) -> None:
    csrf = signed_in(client)
    wrong = change(client, csrf, "not the password", "a new long password")
    assert wrong.status_code == 400
    assert wrong.json() == {"detail": "the current password is wrong"}
    for _ in range(3):
        assert change(client, csrf, "guess", "a new long password").status_code == 400
    assert login(client, password="guess").status_code == 401  # the fifth failure of timur
    locked = change(client, csrf, PASSWORD, "a new long password")  # even the right password now waits
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == str(15 * 60)
    assert login(client).status_code == 429  # one count for logins and password changes
    assert [e["actor"] for e in accounts.audit_log(action="password_change_failed")] == 4 * ["timur"]
    clock.step(15 * 60)
    csrf = signed_in(client)
    assert change(client, csrf, PASSWORD, "a new long password").status_code == 204


def test_the_new_password_follows_the_rules_of_every_password(client: TestClient, app: FastAPI) -> None:
    csrf = signed_in(client)
    with TestClient(app) as phone:
        signed_in(phone)
        short = change(client, csrf, PASSWORD, "short")
        assert short.status_code == 422
        assert short.json() == {"detail": "a password needs at least 10 characters"}
        assert change(client, csrf, PASSWORD, "x" * 1025).status_code == 422
        assert phone.get("/api/v1/me").status_code == 200  # nothing changed
    assert login(client).status_code == 200


def test_changing_credentials_needs_the_session_with_its_csrf_token(client: TestClient,
                                                                    accounts: Accounts) -> None:
    body = {"current": PASSWORD, "new": "a new long password"}
    signed_in(client)
    missing = client.post("/api/v1/me/password", json=body)
    assert missing.status_code == 403
    assert missing.json()["detail"].startswith("missing or wrong CSRF token")
    assert client.post("/api/v1/me/tokens", json={}).status_code == 403
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {accounts.issue_token('timur', by='test').secret}"}
    for path, sent in (("/api/v1/me/password", body), ("/api/v1/me/tokens", {})):
        r = client.post(path, json=sent, headers=bearer)
        assert r.status_code == 403
        assert r.json() == {"detail": "this needs the web app's session (sign in at /login): an API token cannot "
                                      "change its account's password or make tokens"}
    accounts.add_user("wall-3", "kiosk", by="test")
    kiosk = {"Authorization": f"Bearer {accounts.issue_token('wall-3', by='test').secret}"}
    assert "a kiosk has no password" in client.get("/api/v1/me/tokens", headers=kiosk).json()["detail"]
    site = client.get("/api/v1/me/tokens", headers=ADMIN_HEADERS)
    assert site.status_code == 403
    assert "a site-file token (api.tokens) has no account" in site.json()["detail"]
    assert login(client).status_code == 200  # the password is the old one


def test_a_partner_makes_lists_uses_and_revokes_its_own_tokens(client: TestClient, accounts: Accounts) -> None:
    others = accounts.issue_token("timur", label="timur's", by="test")
    csrf = signed_in(client, "acme-user")
    for days in (0, 3651):
        assert client.post("/api/v1/me/tokens", json={"days": days}, headers=csrf).status_code == 422
    made = client.post("/api/v1/me/tokens", json={"label": "statements script", "days": 30}, headers=csrf)
    assert made.status_code == 201
    secret = made.json()["token"]
    assert secret.startswith("kgt_")
    script = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/usage", headers=script).json()["partner"] == "acme"  # the account's role
    listed = client.get("/api/v1/me/tokens")
    assert listed.status_code == 200
    assert listed.json() == [{"id": made.json()["id"], "label": "statements script",
                              "created": "2026-11-18T07:00:00.000Z", "expires": "2026-12-18T07:00:00.000Z",
                              "revoked": None, "last_used": "2026-11-18"}]
    assert secret not in listed.text
    assert str(others.id) not in {str(t["id"]) for t in listed.json()}
    # the script sees its account's tokens and may retire itself
    assert client.get("/api/v1/me/tokens", headers=script).json()[0]["label"] == "statements script"
    assert client.delete(f"/api/v1/me/tokens/{made.json()['id']}", headers=script).status_code == 204
    assert client.get("/api/v1/usage", headers=script).status_code == 401
    assert client.get("/api/v1/me/tokens").json()[0]["revoked"] == "2026-11-18T07:00:00.000Z"
    log = [(e["action"], e["actor"], e["target"], e["detail"].get("token")) for e in accounts.audit_log()[:3]]
    assert log == [("token_revoked", "acme-user", "acme-user", made.json()["id"]),
                   ("token_used", "acme-user", "acme-user", made.json()["id"]),
                   ("token_issued", "acme-user", "acme-user", made.json()["id"])]


def test_another_users_token_is_not_found_whatever_its_id(client: TestClient, accounts: Accounts) -> None:
    others = accounts.issue_token("timur", by="test")
    csrf = signed_in(client, "acme-user")
    theirs = client.delete(f"/api/v1/me/tokens/{others.id}", headers=csrf)
    unknown = client.delete(f"/api/v1/me/tokens/{others.id + 1000}", headers=csrf)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == {"detail": f"you have no token {others.id}"}
    assert client.get("/api/v1/machines", headers={"Authorization": f"Bearer {others.secret}"}).status_code == 200
    assert accounts.audit_log(action="token_revoked") == []

# --- kiosk pairing ----------------------------------------------------------------------------------------
def test_a_wall_screen_pairs_with_a_code_once_and_reads_the_board_only(client: TestClient, app: FastAPI,
                                                                       clock: Clock) -> None:
    made = client.post("/api/v1/kiosks/pair", json={"name": "wall-1"}, headers=ADMIN_HEADERS).json()
    code = made["code"]
    assert len(code) == 9
    assert code[4] == "-"
    assert made["link"] == f"/pair#{code.replace('-', '')}"
    assert made["expires"] == "2026-11-18T07:10:00.000Z"
    with TestClient(app) as wall:
        assert wall.get("/pair").status_code == 200
        r = wall.post("/api/v1/kiosks/session", json={"code": code.lower()})  # typed loosely
        assert r.status_code == 200
        assert r.json()["role"] == "kiosk"
        assert cookie_attributes(r)["max-age"] == str(365 * 86_400)
        assert wall.get("/api/v1/machines").status_code == 200
        assert wall.get("/api/v1/usage").status_code == 403  # no billing
        assert wall.get("/api/v1/alerts").status_code == 200
        with TestClient(app) as second:
            assert second.post("/api/v1/kiosks/session", json={"code": code}).status_code == 401  # used up
        clock.step(365 * 86_400)
        assert wall.get("/api/v1/machines").status_code == 401
    late = client.post("/api/v1/kiosks/pair", json={"name": "wall-1"}, headers=ADMIN_HEADERS).json()
    clock.step(600)
    assert client.post("/api/v1/kiosks/session", json={"code": late["code"]}).status_code == 401


def test_pairing_codes_cannot_be_guessed_for_long(client: TestClient) -> None:
    for _ in range(10):
        assert client.post("/api/v1/kiosks/session", json={"code": "AAAAAAAA"}).status_code == 401
    code = client.post("/api/v1/kiosks/pair", json={}, headers=ADMIN_HEADERS).json()["code"]
    r = client.post("/api/v1/kiosks/session", json={"code": code})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) == 600


def test_pairing_a_name_of_another_role_is_refused(client: TestClient) -> None:
    r = client.post("/api/v1/kiosks/pair", json={"name": "timur"}, headers=ADMIN_HEADERS)
    assert r.status_code == 422
    assert "is not an active kiosk (role technician)" in r.json()["detail"]


# --- pages and the WebSocket ------------------------------------------------------------------------------
def test_the_page_sends_a_browser_without_a_session_to_the_login_page(client: TestClient) -> None:
    r = client.get("/?lang=kk", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/%3Flang%3Dkk"
    page = client.get("/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http" not in page.text.replace("http-equiv", "")  # no asset from the internet
    for asset in ("/static/login.js", "/static/login.css"):
        assert client.get(asset).status_code == 200
    login(client)
    assert client.get("/", follow_redirects=False).status_code == 200


def test_the_live_websocket_takes_the_session_cookie_from_its_own_origin_only(client: TestClient) -> None:
    login(client)
    with client.websocket_connect("/api/v1/live", headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    with client.websocket_connect("/api/v1/live", headers={"Origin": "http://evil.example"}) as ws, \
            pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4401
    assert closed.value.reason == "a page of another origin is refused"
