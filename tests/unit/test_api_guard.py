"""What every response of the API carries and refuses: security headers, authentication before the body, the
body size limit, no credentials in health or errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.state.stage import StateStage

TOKENS: dict[str, tuple[str, Any]] = {"admin-secret-token": ("alice", "admin")}
ADMIN = {"Authorization": "Bearer admin-secret-token"}
MACHINES = [MachineMeta(id="fdm-01", name="Prusa", kind="3d_printer", driver="mqtt", site="krg")]


def make_app(health: dict[str, Any] | None = None, **kw: Any) -> FastAPI:
    ctx = ApiContext(site_id="krg", site_name="Kartech", machines=StateStage(MACHINES, LiveValues(MACHINES)),
                     metrics=Metrics(), tokens=TOKENS,
                     history=None, health=lambda: dict(health or {}), **kw)
    return create_app(ctx)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as c:
        yield c


# --- headers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "headers", "status"), [
    ("GET", "/", {}, 200),
    ("GET", "/api/v1/health", {}, 200),
    ("GET", "/static/app.js", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/api/v1/machines", {}, 401),
    ("GET", "/api/v1/machines", ADMIN, 200),
    ("GET", "/api/v1/machines/nope", ADMIN, 404),
    ("GET", "/metrics", ADMIN, 200),
    ("GET", "/no/such/page", ADMIN, 404),
    ("POST", "/api/v1/alerts/1/ack", ADMIN, 503),
])
def test_every_response_carries_the_security_headers(client: TestClient, method: str, path: str,
                                                     headers: dict[str, str], status: int) -> None:
    r = client.request(method, path, headers=headers)
    assert r.status_code == status
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp  # no inline scripts, nothing from elsewhere
    assert "frame-ancestors 'none'" in csp
    assert "http" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_an_unexpected_error_is_a_500_with_the_headers_and_no_details() -> None:
    app = make_app()

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("password=hunter2")

    r = TestClient(app, raise_server_exceptions=False).get("/api/v1/boom", headers=ADMIN)
    assert r.status_code == 500
    assert "hunter2" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"


def test_docs_are_served_locally_without_inline_scripts(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "cdn" not in page
    assert "http" not in page
    assert "<script>" not in page  # every script is a file: the CSP allows no inline code
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    assert "SwaggerUIBundle" in client.get("/static/docs.js").text


# --- authentication before the body, body limit -----------------------------------------------------------
class ReadCounter:
    """ASGI wrapper counting the body bytes the app pulled from the client."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.read = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting() -> Any:
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-000000"}])
def test_a_big_body_without_a_valid_token_is_401_and_never_read(headers: dict[str, str]) -> None:
    counted = ReadCounter(make_app())
    with TestClient(counted) as c:
        r = c.post("/api/v1/alerts/1/shelve", headers={**headers, "Content-Type": "application/json"},
                   content=b'{"duration_min": 5, "note": "' + b"x" * 5_000_000 + b'"}')
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert counted.read == 0


def test_a_body_over_the_limit_is_413_by_its_length() -> None:
    counted = ReadCounter(make_app())
    with TestClient(counted) as c:
        r = c.post("/api/v1/alerts/1/ack", headers=ADMIN, content=b"x" * ((1 << 20) + 1))
    assert r.status_code == 413
    assert r.json() == {"detail": "request body is larger than 1048576 bytes (api.max_body_bytes)"}
    assert counted.read == 0


def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    chunks = [b"x" * 1000] * 50

    def body() -> Iterator[bytes]:
        yield from chunks

    with TestClient(make_app(max_body_bytes=10_000)) as c:
        r = c.post("/api/v1/alerts/1/ack", headers=ADMIN, content=body())  # chunked: no Content-Length
    assert r.status_code == 413
    assert "10000 bytes" in r.json()["detail"]


def test_the_limit_is_configurable_and_smaller_bodies_pass() -> None:
    with TestClient(make_app(max_body_bytes=200)) as c:
        small = c.post("/api/v1/alerts/1/ack", headers=ADMIN, json={"note": "x" * 50})
        big = c.post("/api/v1/alerts/1/ack", headers=ADMIN, json={"note": "x" * 300})
    assert small.status_code == 503  # got through to the route: no operations in this app
    assert big.status_code == 413


# --- no credentials in what is shown ----------------------------------------------------------------------
def test_health_never_shows_credentials_of_urls() -> None:
    health = {"sinks": {"influxdb": {"state": "failing", "last_error":
              "cannot reach InfluxDB at http://kartech:S3cret@10.0.0.5:8086 (write): ConnectError"}},
              "problems": ["POST http://10.0.0.5:8086/write?db=k&u=kartech&p=S3cret failed"]}
    body = TestClient(make_app(health)).get("/api/v1/health").text
    assert "S3cret" not in body
    assert "http://***@10.0.0.5:8086" in body
    assert "p=***" in body

