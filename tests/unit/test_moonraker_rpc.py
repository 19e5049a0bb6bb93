"""Moonraker's JSON-RPC frames: what a received frame is, and the request we send."""

from __future__ import annotations

import json

from drivers.moonraker.rpc import Error, Malformed, Notification, Result, decode, request


def test_a_result() -> None:
    assert decode('{"jsonrpc": "2.0", "result": {"klippy_state": "ready"}, "id": 7}') == Result(
        7, {"klippy_state": "ready"})


def test_an_error_and_whether_it_is_about_authorization() -> None:
    err = decode('{"jsonrpc": "2.0", "error": {"code": -32602, "message": "Unauthorized"}, "id": 3}')
    assert err == Error(3, -32602, "Unauthorized")
    assert isinstance(err, Error)
    assert err.unauthorized
    old = decode('{"jsonrpc": "2.0", "error": {"code": 401, "message": "Unauthorized"}, "id": 3}')
    assert isinstance(old, Error)
    assert old.unauthorized
    other = decode('{"jsonrpc": "2.0", "error": {"code": 503, "message": "Klippy Host not connected"}, "id": 4}')
    assert isinstance(other, Error)
    assert not other.unauthorized
    assert decode('{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}') == Error(
        None, -32700, "Parse error")


def test_notifications_with_and_without_params() -> None:
    assert decode('{"jsonrpc": "2.0", "method": "notify_klippy_ready"}') == Notification("notify_klippy_ready", None)
    assert decode('{"jsonrpc": "2.0", "method": "notify_status_update", "params": [{"extruder": {}}, 5.5]}') == (
        Notification("notify_status_update", [{"extruder": {}}, 5.5]))


def test_what_is_not_usable_says_why() -> None:
    cases = {"{nope": "malformed_json", "[]": "unexpected_shape", '{"result": 1, "id": 1}': "unexpected_shape",
             '{"jsonrpc": "2.0", "result": 1, "id": "x"}': "unexpected_shape",
             '{"jsonrpc": "2.0", "result": 1, "id": true}': "unexpected_shape",
             '{"jsonrpc": "2.0", "error": "bad", "id": 1}': "unexpected_shape",
             '{"jsonrpc": "2.0", "id": 1}': "unexpected_shape"}
    for frame, reason in cases.items():
        msg = decode(frame)
        assert msg == Malformed(reason, getattr(msg, "detail", "")), frame
    binary = decode(b"\x00\x01")
    assert isinstance(binary, Malformed)
    assert binary.detail == "a binary frame of 2 bytes (Moonraker sends text)"


def test_a_request_frame() -> None:
    assert json.loads(request("printer.objects.subscribe", 2, {"objects": {"extruder": None}})) == {
        "jsonrpc": "2.0", "method": "printer.objects.subscribe", "params": {"objects": {"extruder": None}}, "id": 2}
    assert json.loads(request("server.info", 1)) == {"jsonrpc": "2.0", "method": "server.info", "id": 1}
