"""The ASGI layer in front of every route: security headers, authentication before the body, a body size limit.

- Every HTTP response gets the headers of `SECURITY_HEADERS` (a Content-Security-Policy that allows nothing
  external, no sniffing, no framing, no referrer).
- A request to anything but the open paths (health, the web pages and their assets, the API docs, logging in and
  pairing a kiosk) without valid credentials (a bearer token or a session cookie, gateway/api/auth.py) is answered
  401 before a byte of its body is read; a cookie-authenticated unsafe request without its CSRF token, 403.
- A body larger than `max_body_bytes` is answered 413: at once when `Content-Length` says so, otherwise as soon
  as the streamed body passes the limit (the rest is never read).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.auth import PRINCIPAL_KEY, Principal, csrf_problem, missing_detail

DEFAULT_MAX_BODY_BYTES = 1 << 20
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
OPEN_PATHS = frozenset({"/", "/api/v1/health", "/docs", "/openapi.json", "/favicon.ico", "/login", "/pair",
                        "/api/v1/login", "/api/v1/kiosks/session"})
OPEN_PREFIXES = ("/static/",)


def is_open(path: str) -> bool:
    """Paths anyone may reach: health, the web pages and their assets, the API docs, logging in and pairing."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware; see the module text. `identify` names who sent a request (None: nobody known)."""

    def __init__(self, app: ASGIApp, *, identify: Callable[[HTTPConnection], Principal | None],
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.identify = identify
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if not is_open(scope["path"]):
            conn = HTTPConnection(scope)
            principal = self.identify(conn)
            if principal is None:
                await _answer(send_secured, 401, missing_detail(conn), [(b"www-authenticate", b"Bearer")])
                return
            problem = csrf_problem(conn, principal, scope["method"])
            if problem is not None:
                await _answer(send_secured, 403, problem)
                return
            scope[PRINCIPAL_KEY] = principal
        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send_secured, 400, "Content-Length is not a number")
                return
            if declared > limit:
                await _answer(send_secured, 413, _too_large(limit))
                return

        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the app answers to a cut-off body is replaced by our 413
            if message["type"] == "http.response.start":
                started = True
            await send_secured(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if too_large and not started:
            await _answer(send_secured, 413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"request body is larger than {limit} bytes (api.max_body_bytes)"


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
