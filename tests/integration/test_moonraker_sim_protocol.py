"""The Moonraker simulator speaks Moonraker's JSON-RPC as documented, whatever the driver does with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from simulators.moonraker_sim import Cycle, MoonrakerSim

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def sim() -> Iterator[MoonrakerSim]:
    s = MoonrakerSim(api_key=KEY, cycle=Cycle(idle_s=3600), interval_s=0.05)
    s.start()
    yield s
    s.stop()


def ask(ws: ClientConnection, frame: str) -> Any:
    """Send a frame; the first answer that is not a notification."""
    ws.send(frame)
    while True:
        msg = json.loads(ws.recv(timeout=5))
        if "method" not in msg or isinstance(msg, list):
            return msg


def call(ws: ClientConnection, method: str, req_id: int, params: dict[str, Any] | None = None) -> Any:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        req["params"] = params
    return ask(ws, json.dumps(req))


def test_requests_without_the_key_are_unauthorized_after_an_accepted_upgrade(sim: MoonrakerSim) -> None:
    with connect(sim.url) as ws:
        assert call(ws, "server.info", 1) == {"jsonrpc": "2.0", "error": {"code": -32602, "message": "Unauthorized"},
                                              "id": 1}
        identify = {"client_name": "t", "version": "1", "type": "other", "url": "x", "api_key": KEY}
        assert "connection_id" in call(ws, "server.connection.identify", 2, identify)["result"]
        assert call(ws, "server.info", 3)["result"]["klippy_state"] == "ready"


def test_subscribe_returns_the_pruned_status_then_deltas(sim: MoonrakerSim) -> None:
    with connect(sim.url, additional_headers={"X-Api-Key": KEY}) as ws:
        answer = call(ws, "printer.objects.subscribe", 7,
                      {"objects": {"extruder": ["temperature", "target"], "print_stats": None, "no_such": None}})
        assert answer["id"] == 7
        assert set(answer["result"]) == {"eventtime", "status"}
        status = answer["result"]["status"]
        assert set(status) == {"extruder", "print_stats"}
        assert set(status["extruder"]) == {"temperature", "target"}
        assert status["print_stats"]["state"] == "standby"
        sim.update({"extruder": {"temperature": 99.5, "power": 0.7}})
        while True:
            msg = json.loads(ws.recv(timeout=5))
            if msg.get("method") == "notify_status_update":
                break
        delta, eventtime = msg["params"]
        assert delta == {"extruder": {"temperature": 99.5}}  # power was not asked for
        assert isinstance(eventtime, float)


def test_protocol_errors_as_moonraker_builds_them(sim: MoonrakerSim) -> None:
    with connect(sim.url, additional_headers={"X-Api-Key": KEY}) as ws:
        assert ask(ws, "{oops") == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"},
                                    "id": None}
        assert ask(ws, '{"jsonrpc": "1.0", "method": "server.info", "id": 2}')["error"]["code"] == -32600
        assert call(ws, "printer.gcode.script", 3, {"script": "G28"})["error"] == {
            "code": -32601, "message": "Method not found"}
        batch = ask(ws, json.dumps([{"jsonrpc": "2.0", "method": "server.info", "id": 4},
                                    {"jsonrpc": "2.0", "method": "nope", "id": 5}]))
        assert [a["id"] for a in batch] == [4, 5]
        sim.klippy_disconnect()
        assert call(ws, "printer.objects.query", 6, {"objects": {"extruder": None}})["error"] == {
            "code": 503, "message": "Klippy Host not connected"}
        info = call(ws, "server.info", 7)["result"]
        assert (info["klippy_connected"], info["klippy_state"]) == (False, "disconnected")


def test_klippy_notifications(sim: MoonrakerSim) -> None:
    with connect(sim.url, additional_headers={"X-Api-Key": KEY}) as ws:
        sim.klippy_shutdown()
        sim.klippy_disconnect()
        sim.klippy_ready()
        seen = []
        while len(seen) < 3:
            method = json.loads(ws.recv(timeout=5)).get("method")
            if method != "notify_proc_stat_update":
                seen.append(method)
        assert seen == ["notify_klippy_shutdown", "notify_klippy_disconnected", "notify_klippy_ready"]
