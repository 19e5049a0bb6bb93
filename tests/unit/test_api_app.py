"""HTTP API, auth and live WebSocket of `gateway.api.app`, against the real live view and state stage fed with
Readings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from kit.ops import Lab
from starlette.websockets import WebSocketDisconnect

from gateway.api.app import create_app
from gateway.api.auth import Principal, find_principal, require_role
from gateway.api.context import ApiContext
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Quality, Reading, Value

NOW_NS = 1_794_985_200_000_000_000  # 2026-11-18T07:00:00Z, the hub's clock: nothing turns stale under us
ADMIN = {"Authorization": "Bearer admin-secret"}
VIEWER = {"Authorization": "Bearer viewer-secret"}
TOKENS: dict[str, tuple[str, Any]] = {
    "admin-secret": ("alice", "admin"),
    "tech-secret": ("timur", "technician"),
    "viewer-secret": ("bob", "viewer"),
}
MACHINES = [
    MachineMeta(id="fdm-01", name="Prusa MK4 #1", kind="3d_printer", driver="mqtt", site="krg",
                lab="prototyping"),
    MachineMeta(id="furnace-01", name="Muffle furnace", kind="furnace", driver="opcua", site="krg",
                lab="materials"),
]


def reading(machine: str, signal: str, value: Value, unit: str | None = None, *, at_ns: int = NOW_NS,
            quality: Quality = Quality.GOOD) -> Reading:
    return Reading(machine, signal, value, unit, quality, at_ns, at_ns)


class HistoryStub:
    """An async history function that records its calls."""

    def __init__(self, rows: list[tuple[int, Value, str]] | None = None, fail: bool = False) -> None:
        self.rows = rows or []
        self.fail = fail
        self.calls: list[tuple[str, str, int, int, int]] = []

    async def __call__(self, machine: str, signal: str, start_ns: int, end_ns: int,
                       limit: int) -> list[tuple[int, Value, str]]:
        self.calls.append((machine, signal, start_ns, end_ns, limit))
        if self.fail:
            raise ConnectionError("influxdb at 127.0.0.1:8086 refused the connection")
        return self.rows


@pytest.fixture
def hub() -> Lab:
    live = Lab(MACHINES, lambda: NOW_NS)
    live.update([
        reading("fdm-01", "nozzle_temp", 215.5, "degC"),
        reading("fdm-01", "state", "running"),
        reading("fdm-01", "door_open", False),
    ])
    return live


@pytest.fixture
def history() -> HistoryStub:
    return HistoryStub([(NOW_NS - 2_000_000_000, 214.0, "good"), (NOW_NS - 1_000_000_000, 215.5, "good")])


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics()
    m.describe("readings_in_total", "counter", "Readings received from drivers")
    m.inc("readings_in_total", 42, driver="mqtt")
    return m


def make_ctx(hub: Lab, metrics: Metrics, history: HistoryStub | None,
             health: dict[str, Any] | None = None) -> ApiContext:
    return ApiContext(site_id="krg", site_name="Kartech Karaganda", machines=hub.stage, metrics=metrics, tokens=TOKENS,
                      history=history, health=lambda: dict(health or {"outbox_queued": 0}))


@pytest.fixture
def app(hub: Lab, metrics: Metrics, history: HistoryStub) -> FastAPI:
    return create_app(make_ctx(hub, metrics, history))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


# --- auth -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/machines", "/api/v1/machines/fdm-01", "/metrics",
                                  "/api/v1/machines/fdm-01/history?signal=nozzle_temp"])
def test_protected_paths_need_a_valid_bearer_token(client: TestClient, path: str) -> None:
    missing = client.get(path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]

    wrong = client.get(path, headers={"Authorization": "Bearer admin-secreT"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == {"detail": "invalid token"}

    assert client.get(path, headers={"Authorization": "Basic YWRtaW4tc2VjcmV0"}).status_code == 401
    assert client.get(path, headers=VIEWER).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/health", "/", "/static/app.js", "/static/app.css", "/docs",
                                  "/openapi.json"])
def test_open_paths_need_no_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_find_principal_matches_exact_tokens_only() -> None:
    assert find_principal(TOKENS, "tech-secret") == Principal("timur", "technician")
    assert find_principal(TOKENS, "tech-secre") is None
    assert find_principal(TOKENS, "") is None
    assert find_principal(TOKENS, None) is None


def test_require_role_allows_listed_roles_and_forbids_others(app: FastAPI) -> None:
    @app.post("/api/v1/test-ack")
    def ack(who: Annotated[Principal, Depends(require_role("technician", "admin"))]) -> dict[str, str]:
        return {"by": who.name}

    with TestClient(app) as c:
        technician = {"Authorization": "Bearer tech-secret"}
        assert c.post("/api/v1/test-ack", headers=technician).json() == {"by": "timur"}
        assert c.post("/api/v1/test-ack", headers=ADMIN).status_code == 200
        forbidden = c.post("/api/v1/test-ack", headers=VIEWER)
        assert forbidden.status_code == 403
        assert forbidden.json()["detail"] == "role 'viewer' may not do this; needs one of: admin, technician"
        assert c.post("/api/v1/test-ack").status_code == 401


def test_require_role_needs_a_role() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require_role()


# --- health and page --------------------------------------------------------------------------------------
def test_health_is_ok_and_carries_the_gateways_details(client: TestClient) -> None:
    assert client.get("/api/v1/health").json() == {
        "status": "ok", "site": "krg", "site_name": "Kartech Karaganda", "version": "0.1.0", "accounts": False,
        "outbox_queued": 0,
    }


def test_health_is_degraded_when_the_gateway_reports_problems(hub: Lab, metrics: Metrics) -> None:
    ctx = make_ctx(hub, metrics, None, {"problems": ["influxdb unreachable"]})
    body = TestClient(create_app(ctx)).get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["problems"] == ["influxdb unreachable"]


def test_health_is_degraded_when_the_health_callable_fails(hub: Lab, metrics: Metrics) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("outbox closed")

    ctx = make_ctx(hub, metrics, None)
    ctx.health = broken
    body = TestClient(create_app(ctx)).get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["problems"] == ["health check failed: outbox closed"]


def test_page_is_served_with_its_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # everything local, no CDN
    assert "WebSocket" in client.get("/static/app.js").text


# --- machines ---------------------------------------------------------------------------------------------
def test_machines_lists_every_machine_as_the_hub_shows_it(client: TestClient, hub: Lab) -> None:
    body = client.get("/api/v1/machines", headers=ADMIN).json()
    assert body == hub.stage.machines()
    assert [m["id"] for m in body] == ["fdm-01", "furnace-01"]


def test_machine_detail_has_the_documented_shape(client: TestClient) -> None:
    m = client.get("/api/v1/machines/fdm-01", headers=ADMIN).json()
    assert set(m) >= {"id", "name", "kind", "driver", "state", "state_since", "last_seen", "signals", "lab",
                      "connected"}
    assert m["state"] == "running"
    assert m["lab"] == "prototyping"
    assert m["last_seen"] == "2026-11-18T07:00:00.000Z"
    assert m["signals"]["nozzle_temp"] == {"value": 215.5, "unit": "degC", "ts": "2026-11-18T07:00:00.000Z",
                                           "quality": "good"}
    assert m["signals"]["door_open"]["value"] is False


def test_silent_machine_is_offline_without_signals(client: TestClient) -> None:
    m = client.get("/api/v1/machines/furnace-01", headers=ADMIN).json()
    assert m["state"] == "offline"
    assert m["signals"] == {}
    assert m["last_seen"] is None


def test_unknown_machine_is_404_with_a_clear_message(client: TestClient) -> None:
    for path in ["/api/v1/machines/nope", "/api/v1/machines/nope/history?signal=x"]:
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 404
        assert r.json() == {"detail": "unknown machine 'nope'; GET /api/v1/machines lists the known ones"}


# --- history ----------------------------------------------------------------------------------------------
def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def test_history_returns_points_and_passes_the_query_through(client: TestClient,
                                                              history: HistoryStub) -> None:
    r = client.get("/api/v1/machines/fdm-01/history", headers=ADMIN, params={
        "signal": "nozzle_temp", "start": "2026-11-18T06:00:00Z", "end": "2026-11-18T08:00:00", "limit": 500})
    assert r.status_code == 200
    assert r.json() == {
        "machine": "fdm-01", "signal": "nozzle_temp",
        "start": "2026-11-18T06:00:00.000Z", "end": "2026-11-18T08:00:00.000Z",
        "points": [{"ts": "2026-11-18T06:59:58.000Z", "value": 214.0, "quality": "good"},
                   {"ts": "2026-11-18T06:59:59.000Z", "value": 215.5, "quality": "good"}],
    }
    assert history.calls == [
        ("fdm-01", "nozzle_temp", ns("2026-11-18T06:00:00"), ns("2026-11-18T08:00:00"), 500)]


@pytest.mark.parametrize("start", ["2026-11-18T11:00:00+05:00", "2026-11-18T11:00:00 05:00",
                                   "2026-11-18T06:00:00.000Z", "2026-11-18 06:00:00"])
def test_history_accepts_iso_times_with_offsets(client: TestClient, history: HistoryStub, start: str) -> None:
    r = client.get("/api/v1/machines/fdm-01/history", headers=ADMIN,
                   params={"signal": "nozzle_temp", "start": start, "end": "2026-11-18T08:00:00Z"})
    assert r.status_code == 200, r.text
    assert history.calls[0][2] == ns("2026-11-18T06:00:00")


def test_history_defaults_to_the_last_hour_and_10000_points(client: TestClient, history: HistoryStub) -> None:
    before = datetime.now(UTC).timestamp() * 1e9
    assert client.get("/api/v1/machines/fdm-01/history?signal=nozzle_temp", headers=ADMIN).status_code == 200
    _, _, start_ns, end_ns, limit = history.calls[0]
    assert end_ns - start_ns == 3600 * 1_000_000_000
    assert before - 1e9 <= end_ns <= datetime.now(UTC).timestamp() * 1e9 + 1e9
    assert limit == 10_000


@pytest.mark.parametrize(("params", "detail"), [
    ({"start": "yesterday"}, "start: 'yesterday' is not an ISO-8601 time; use e.g. 2026-11-26T09:00:00Z"),
    ({"end": "2026-13-01T00:00:00Z"}, "end: '2026-13-01T00:00:00Z' is not an ISO-8601 time; "
                                      "use e.g. 2026-11-26T09:00:00Z"),
    ({"start": "2026-11-18T08:00:00Z", "end": "2026-11-18T08:00:00Z"},
     "start (2026-11-18T08:00:00.000Z) must be before end (2026-11-18T08:00:00.000Z)"),
    ({"start": "2026-11-18T09:00:00Z", "end": "2026-11-18T08:00:00Z"},
     "start (2026-11-18T09:00:00.000Z) must be before end (2026-11-18T08:00:00.000Z)"),
])
def test_history_rejects_bad_times(client: TestClient, history: HistoryStub, params: dict[str, str],
                                   detail: str) -> None:
    r = client.get("/api/v1/machines/fdm-01/history", headers=ADMIN,
                   params={"signal": "nozzle_temp", **params})
    assert r.status_code == 422
    assert r.json() == {"detail": detail}
    assert history.calls == []


@pytest.mark.parametrize("query", ["signal=nozzle_temp&limit=0", "signal=nozzle_temp&limit=100001",
                                   "signal=nozzle_temp&limit=many", "signal=", ""])
def test_history_rejects_bad_limit_and_missing_signal(client: TestClient, history: HistoryStub,
                                                      query: str) -> None:
    assert client.get(f"/api/v1/machines/fdm-01/history?{query}", headers=ADMIN).status_code == 422
    assert history.calls == []


def test_history_accepts_the_maximum_limit(client: TestClient, history: HistoryStub) -> None:
    r = client.get("/api/v1/machines/fdm-01/history?signal=nozzle_temp&limit=100000", headers=ADMIN)
    assert r.status_code == 200
    assert history.calls[0][4] == 100_000


def test_history_without_a_store_is_503(hub: Lab, metrics: Metrics) -> None:
    r = TestClient(create_app(make_ctx(hub, metrics, None))).get(
        "/api/v1/machines/fdm-01/history?signal=nozzle_temp", headers=ADMIN)
    assert r.status_code == 503
    assert r.json() == {"detail": "history is not available: this gateway has no history store configured"}


def test_history_store_failure_is_503_with_the_reason(hub: Lab, metrics: Metrics) -> None:
    ctx = make_ctx(hub, metrics, HistoryStub(fail=True))
    r = TestClient(create_app(ctx)).get("/api/v1/machines/fdm-01/history?signal=nozzle_temp", headers=ADMIN)
    assert r.status_code == 503
    assert r.json() == {
        "detail": "history store did not answer: influxdb at 127.0.0.1:8086 refused the connection"}


# --- metrics ----------------------------------------------------------------------------------------------
def test_metrics_is_prometheus_text(client: TestClient) -> None:
    r = client.get("/metrics", headers=VIEWER)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.text == (
        "# HELP kartech_readings_in_total Readings received from drivers\n"
        "# TYPE kartech_readings_in_total counter\n"
        'kartech_readings_in_total{driver="mqtt"} 42\n'
    )


# --- live WebSocket ---------------------------------------------------------------------------------------
def auth(token: str) -> dict[str, str]:
    return {"type": "auth", "token": token}


def test_live_sends_a_snapshot_then_updates(client: TestClient, hub: Lab) -> None:
    with client.websocket_connect("/api/v1/live") as ws:
        ws.send_json(auth("viewer-secret"))  # a browser cannot set headers: the token is the first message
        snapshot = ws.receive_json()
        assert snapshot == {"type": "snapshot", "machines": hub.stage.machines()}

        # the hub lives in the app's event loop: update it there, as the pipeline would
        ws.portal.call(hub.update, [reading("fdm-01", "nozzle_temp", 230.25, "degC", at_ns=NOW_NS + 1)])
        update = ws.receive_json()
        assert update["type"] == "machine"
        assert update["machine"]["id"] == "fdm-01"
        assert update["machine"]["signals"]["nozzle_temp"]["value"] == 230.25

        ws.portal.call(hub.stage.fanout.publish, {"type": "alert", "id": "a1"})
        assert ws.receive_json() == {"type": "alert", "id": "a1"}
    assert hub.stage.fanout.subscriber_count() == 0  # unsubscribed once the client left


def test_live_accepts_the_authorization_header(client: TestClient) -> None:
    with client.websocket_connect("/api/v1/live", headers=ADMIN) as ws:
        assert ws.receive_json()["type"] == "snapshot"


@pytest.mark.parametrize("first", [auth("wrong"), auth(""), {"type": "auth"}, {"token": "viewer-secret"},
                                   "viewer-secret", ["auth", "viewer-secret"]])
def test_live_closes_with_4401_on_a_bad_first_message(client: TestClient, hub: Lab, first: Any) -> None:
    with client.websocket_connect("/api/v1/live") as ws:
        if isinstance(first, str):
            ws.send_text(first)
        else:
            ws.send_json(first)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401
    assert hub.stage.fanout.subscriber_count() == 0


@pytest.mark.parametrize("url", ["/api/v1/live?token=viewer-secret", "/api/v1/live?access_token=viewer-secret",
                                 "/api/v1/live?TOKEN=viewer-secret&x=1"])
def test_live_refuses_a_token_in_the_url_even_a_valid_one(client: TestClient, hub: Lab, url: str) -> None:
    """URLs end up in access logs and browser history: a token there is refused, not used."""
    with client.websocket_connect(url) as ws:
        ws.send_json(auth("viewer-secret"))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401
    assert "URL" in closed.value.reason
    assert hub.stage.fanout.subscriber_count() == 0


def test_live_closes_with_4401_when_no_token_comes_in_time(client: TestClient, hub: Lab,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.api.app.WS_AUTH_TIMEOUT_S", 0.2)
    with client.websocket_connect("/api/v1/live") as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4401
    assert hub.stage.fanout.subscriber_count() == 0


def test_the_listening_socket_is_tcp_so_asyncio_turns_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP; without it every response body waits
    ~40 ms for the client's delayed ACK (seen in the soak benchmark)."""
    import socket

    from gateway.api.app import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
