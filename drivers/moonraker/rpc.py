"""JSON-RPC 2.0 as Moonraker speaks it on its WebSocket: what one received text frame is (pure, no I/O).

Moonraker sends three kinds of objects in text frames (docs/external_api/introduction.md): the result of a
request (`{"jsonrpc": "2.0", "result": ..., "id": N}`), its error (`{"jsonrpc": "2.0", "error": {"code": C,
"message": M}, "id": N}`, id null when the request could not be parsed) and notifications (`{"jsonrpc": "2.0",
"method": "notify_...", "params": [...]}`). Anything else is `Malformed`, with a bad-input reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Result:
    id: int
    value: Any


@dataclass(frozen=True, slots=True)
class Error:
    id: int | None
    code: int
    message: str

    @property
    def unauthorized(self) -> bool:
        """Moonraker refused the request for want of authorization: a 401 turned into JSON-RPC code -32602 by
        current versions (moonraker/common.py, execute_method), 401 itself by older ones."""
        return self.code in (401, -32602) and "unauthorized" in self.message.lower()


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any  # a list for Moonraker's notifications; None when there are none


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str  # a bad_input reason: malformed_json, unexpected_shape
    detail: str


Message = Result | Error | Notification | Malformed


def request(method: str, req_id: int, params: dict[str, Any] | None = None) -> str:
    """One request frame."""
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        obj["params"] = params
    return json.dumps(obj, separators=(",", ":"))


def decode(frame: str | bytes) -> Message:
    """What a received frame is."""
    if isinstance(frame, bytes):
        return Malformed("unexpected_shape", f"a binary frame of {len(frame)} bytes (Moonraker sends text)")
    try:
        obj = json.loads(frame)
    except ValueError as err:
        return Malformed("malformed_json", f"{err}: {_clip(frame)}")
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0":
        return Malformed("unexpected_shape", f"not a JSON-RPC 2.0 object: {_clip(frame)}")
    method = obj.get("method")
    if isinstance(method, str):
        return Notification(method, obj.get("params"))
    req_id = obj.get("id")
    if "error" in obj:
        error = obj["error"]
        if (isinstance(error, dict) and isinstance(error.get("code"), int)
                and isinstance(error.get("message"), str) and (req_id is None or _is_id(req_id))):
            return Error(req_id, error["code"], error["message"])
        return Malformed("unexpected_shape", f"an error without code and message: {_clip(frame)}")
    if "result" in obj and isinstance(req_id, int) and not isinstance(req_id, bool):
        return Result(req_id, obj["result"])
    return Malformed("unexpected_shape", f"neither a result, an error nor a notification: {_clip(frame)}")


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
