"""The gateway's HTTP API, live WebSocket and web page: `create_app(ctx)` builds it, `serve(...)` runs it.

Everything the app needs comes in through `ApiContext`; the app keeps it in `app.state.ctx` and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import socket
from collections.abc import Generator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio._backends._asyncio  # loaded now, not on the first request (it held the loop ~250 ms there)
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp

from gateway.api.accounts import install as install_accounts
from gateway.api.auth import (
    accounts_of,
    client_address,
    context_of,
    current_principal,
    foreign_origin,
    identify,
    login_redirect,
    login_required,
    page_principal,
    token_principal,
)
from gateway.api.billing import router as billing_router
from gateway.api.catalog import router as catalog_router
from gateway.api.checkins import router as checkins_router
from gateway.api.context import ApiContext
from gateway.api.guard import Guard
from gateway.api.operations import router as operations_router
from gateway.api.site import router as site_router
from gateway.api.times import parse_time
from gateway.errors import KartechError
from gateway.reading import Value, now_ns
from gateway.redact import RedactingFilter, redact, redact_obj, secret_param
from gateway.state.model import iso

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
HISTORY_DEFAULT_WINDOW = timedelta(hours=1)
HISTORY_DEFAULT_LIMIT = 10_000
HISTORY_MAX_LIMIT = 100_000
WS_CLOSE_UNAUTHORIZED = 4401
WS_AUTH_TIMEOUT_S = 10.0

Ctx = Annotated[ApiContext, Depends(context_of)]


# --- documented shapes ------------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    detail: str


class SignalOut(BaseModel):
    value: Value
    unit: str | None
    ts: str | None = Field(description="source time of the value, ISO-8601 UTC")
    quality: str = Field(description="good | uncertain | bad | stale")


class MachineOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    kind: str
    driver: str
    lab: str | None
    state: str = Field(description="offline | idle | running | paused | error | maintenance")
    state_since: str | None
    last_seen: str | None
    connected: bool
    signals: dict[str, SignalOut]


class PointOut(BaseModel):
    ts: str
    value: Value
    quality: str


class HistoryOut(BaseModel):
    machine: str
    signal: str
    start: str
    end: str
    points: list[PointOut]


Responses = dict[int | str, dict[str, Any]]
_UNAUTHORIZED: Responses = {401: {"model": ErrorOut, "description": "missing or bad token"}}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_BAD_INPUT: Responses = {422: {"model": ErrorOut, "description": "a parameter is not valid; `detail` says which"}}
_UNKNOWN_MACHINE: Responses = {404: {"model": ErrorOut, "description": "unknown machine"}}


# --- helpers ----------------------------------------------------------------------------------------------
def _known_machine(ctx: ApiContext, machine_id: str) -> None:
    if not ctx.machines.has(machine_id):
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"unknown machine '{machine_id}'; GET /api/v1/machines lists the known ones",
        )


# --- routes -----------------------------------------------------------------------------------------------
public = APIRouter()
_PARTNER: Responses = {403: {"model": ErrorOut, "description": "a partner token reads only its usage and statements"}}
protected = APIRouter(dependencies=[Depends(current_principal)],
                      responses={**_UNAUTHORIZED, **_PARTNER, **_BAD_INPUT})


@public.get("/api/v1/health", tags=["gateway"])
def health(ctx: Ctx, request: Request) -> dict[str, Any]:
    """Open to everyone (load balancers, uptime checks). `status` is `degraded` when the gateway reports
    problems (`problems`: a non-empty list) or an explicit `status` of its own. `accounts`: people sign in at
    /login (false: the gateway has no business store, and its page asks for a site-file token)."""
    try:
        details = dict(ctx.health())
    except Exception as err:
        log.warning("health check failed", exc_info=True)
        details = {"problems": [f"health check failed: {err}"]}
    details = redact_obj(details)  # open to everyone: no URL credentials in sink errors and the like
    problems = details.get("problems")
    status_text = details.pop("status", None) or ("degraded" if problems else "ok")
    return {"status": status_text, "site": ctx.site_id, "site_name": ctx.site_name, "version": ctx.version,
            "accounts": accounts_of(request) is not None, **details}


@public.get("/", include_in_schema=False)
def page(request: Request) -> Response:
    if page_principal(request) is None and login_required(request):
        return login_redirect(request)
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@protected.get("/api/v1/machines", tags=["machines"], responses={200: {"model": list[MachineOut]}})
def machines(ctx: Ctx) -> list[dict[str, Any]]:
    """Every machine with its live state and latest value of each signal."""
    return ctx.machines.machines()


@protected.get("/api/v1/machines/{machine_id}", tags=["machines"],
               responses={200: {"model": MachineOut}, **_UNKNOWN_MACHINE})
def machine(machine_id: str, ctx: Ctx) -> dict[str, Any]:
    """One machine with its live state and latest value of each signal."""
    _known_machine(ctx, machine_id)
    return ctx.machines.machine(machine_id)


@protected.get("/api/v1/machines/{machine_id}/history", tags=["machines"], response_model=HistoryOut,
               responses={**_UNKNOWN_MACHINE, **_BAD_INPUT,
                          503: {"model": ErrorOut, "description": "no history store, or it did not answer"}})
async def history(
    machine_id: str,
    ctx: Ctx,
    signal: Annotated[str, Query(min_length=1, description="signal name, e.g. nozzle_temp")],
    start: Annotated[str | None, Query(description="ISO-8601; naive means UTC; default end - 1 h")] = None,
    end: Annotated[str | None, Query(description="ISO-8601; naive means UTC; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=HISTORY_MAX_LIMIT, description="most points returned")] = (
        HISTORY_DEFAULT_LIMIT
    ),
) -> HistoryOut:
    """Stored values of one signal between `start` and `end`, oldest first."""
    _known_machine(ctx, machine_id)
    if ctx.history is None:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="history is not available: this gateway has no history store configured",
        )
    end_ns = parse_time("end", end) if end else now_ns()
    window_ns = HISTORY_DEFAULT_WINDOW // timedelta(microseconds=1) * 1000
    start_ns = parse_time("start", start) if start else end_ns - window_ns
    if start_ns >= end_ns:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"start ({iso(start_ns)}) must be before end ({iso(end_ns)})",
        )
    try:
        rows = await ctx.history(machine_id, signal, start_ns, end_ns, limit)
    except Exception as err:
        log.warning("history query failed", extra={"machine": machine_id, "signal": signal}, exc_info=True)
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=redact(f"history store did not answer: {err}"),
        ) from err
    return HistoryOut(
        machine=machine_id,
        signal=signal,
        start=iso(start_ns) or "",
        end=iso(end_ns) or "",
        points=[PointOut(ts=iso(ts) or "", value=value, quality=quality) for ts, value, quality in rows],
    )


@protected.get("/metrics", tags=["gateway"], response_class=PlainTextResponse,
               responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                "description": "Prometheus text exposition format 0.0.4"},
                          # errors stay JSON, whatever the media type of the answer
                          401: {"description": "missing or bad token", "content": _JSON_ERROR},
                          422: {"description": "not valid", "content": _JSON_ERROR}})
def metrics(ctx: Ctx) -> PlainTextResponse:
    """The gateway's own health in Prometheus text format."""
    return PlainTextResponse(ctx.metrics.render(), media_type=PROMETHEUS_TEXT)


@public.websocket("/api/v1/live")
async def live(websocket: WebSocket) -> None:
    """A snapshot of every machine, then machine updates and alerts as they happen (JSON text frames).

    Authenticate with an `Authorization: Bearer <token>` header, the web app's session cookie (from a page of
    this gateway: another `Origin` is refused) or, from a browser without a session (which cannot set headers),
    with a first text frame `{"type": "auth", "token": "<token>"}` within 10 s. A token in the URL is refused:
    URLs end up in logs.
    """
    ctx = context_of(websocket)
    # accept before closing so that the browser sees the 4401 close code, not a bare failed handshake
    await websocket.accept()
    if any(secret_param(name) for name in websocket.query_params):
        await websocket.close(code=WS_CLOSE_UNAUTHORIZED,
                              reason="a token in the URL is refused; send it as the first message")
        return
    if foreign_origin(websocket):  # a page of another site, riding on the browser's session cookie
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await websocket.close(code=WS_CLOSE_UNAUTHORIZED, reason="a page of another origin is refused")
        return
    principal = identify(ctx, accounts_of(websocket), websocket)
    if principal is None and websocket.headers.get("authorization") is None:
        presented = await _token_from_first_message(websocket)
        principal = token_principal(ctx, accounts_of(websocket), presented, client_address(websocket))
    if principal is None or principal.role == "partner":  # a partner token reads only its usage and statements
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await websocket.close(code=WS_CLOSE_UNAUTHORIZED, reason="missing or invalid token" if principal is None
                                  else "a partner token reads only its usage and statements")
        return
    queue = ctx.machines.fanout.subscribe()
    try:
        await websocket.send_json({"type": "snapshot", "machines": ctx.machines.machines()})
        await _stream(websocket, queue)
    except (WebSocketDisconnect, OSError):
        log.debug("live client left during the snapshot")
    finally:
        ctx.machines.fanout.unsubscribe(queue)


async def _token_from_first_message(websocket: WebSocket) -> str | None:
    """The token of a first frame `{"type": "auth", "token": "..."}`; None on anything else or after a timeout."""
    try:
        async with asyncio.timeout(WS_AUTH_TIMEOUT_S):
            message = await websocket.receive()
    except (TimeoutError, WebSocketDisconnect, OSError):
        return None
    text = message.get("text")
    if message["type"] != "websocket.receive" or not isinstance(text, str) or len(text) > 4096:
        return None
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
        return None
    token: str = frame["token"]
    return token


async def _stream(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Forward hub messages until the client disconnects or sending to it fails."""
    async with anyio.create_task_group() as tasks:

        async def forward() -> None:
            # a client that went away while we were sending is the normal end, not an error
            with contextlib.suppress(WebSocketDisconnect, OSError):
                while True:
                    await websocket.send_json(await queue.get())
            tasks.cancel_scope.cancel()

        async def until_disconnect() -> None:
            # read (and ignore) what the client sends, so that a closed socket is noticed at once
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            tasks.cancel_scope.cancel()

        tasks.start_soon(forward)
        tasks.start_soon(until_disconnect)


@public.get("/docs", include_in_schema=False)
def docs() -> FileResponse:
    """Swagger UI from assets installed with the gateway (no CDN), started by a script file (no inline code)."""
    return FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})


@public.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(swagger_ui_dir() / "favicon.png", media_type="image/png")


def swagger_ui_dir() -> Path:
    """Swagger UI's assets as installed by the `fastapi-offline` package."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise KartechError("the fastapi-offline package is missing; reinstall the gateway with pip")
    return Path(spec.origin).parent / "static"


def describe_invalid(errors: Sequence[Any]) -> str:
    """Pydantic's validation errors as one line a person can act on: where, and what is wrong (no input echoed)."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body"}.get(
            loc[0] if loc else "", "")
        name = ".".join(loc[1:])
        label = f"{where} '{name}'" if where and name else (where or name or "request")
        parts.append(f"{label}: {err.get('msg', 'is not valid')}")
    return "; ".join(parts) or "the request is not valid"


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": describe_invalid(errors)})


class _GuardedApp(FastAPI):
    """FastAPI with `Guard` outermost, so that even the 500 page of an unexpected error has the security headers."""

    guard_options: dict[str, Any]

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), **self.guard_options)


def create_app(ctx: ApiContext) -> FastAPI:
    """The FastAPI app for one gateway; OpenAPI at /docs."""
    app = _GuardedApp(
        title=f"Kartech Gateway — {ctx.site_name}",
        version=ctx.version,
        description="Live machine status, history and the gateway's own metrics. "
        "Send `Authorization: Bearer <token>` everywhere except /api/v1/health and the web page. "
        f"Request bodies larger than {ctx.max_body_bytes} bytes are refused (413).",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.state.ctx = ctx
    install_accounts(app, ctx)
    app.guard_options = {"identify": lambda conn: identify(ctx, app.state.accounts, conn),
                         "max_body_bytes": ctx.max_body_bytes}
    app.include_router(public)
    app.include_router(protected)
    app.include_router(operations_router)
    app.include_router(billing_router)
    app.include_router(checkins_router)
    app.include_router(catalog_router)
    app.include_router(site_router)
    app.mount("/static/docs", StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


# --- running inside the gateway's own event loop ----------------------------------------------------------
class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the gateway's own `main()` and says when it is listening."""

    def __init__(self, config: uvicorn.Config, listening: asyncio.Event | None) -> None:
        super().__init__(config)
        self._listening = listening

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._listening is not None:
            self._listening.set()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets created with it;
    # with protocol 0 a response body written after its headers waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError as err:
        sock.close()
        raise KartechError(
            f"web server cannot listen on {host}:{port}: {err.strerror or err}; "
            "choose another port (0 picks a free one) or stop whatever already uses it"
        ) from err
    return sock


async def serve(app: FastAPI, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Serve `app` on host:port until cancelled, in the running event loop, without touching signal handlers.

    `port` 0 picks a free port; the port actually bound is in `app.state.bound_port` before `ready` is set.
    Cancelling stops accepting, closes open WebSockets (code 1012), waits for a graceful shutdown (at most 5 s)
    and then lets the cancellation propagate.
    """
    sock = _listen(host, port)
    app.state.bound_port = sock.getsockname()[1]
    for name in ("uvicorn.error", "uvicorn.access"):  # uvicorn logs request URLs: never with a credential in them
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False,
                            timeout_graceful_shutdown=5)
    server = _EmbeddedServer(config, ready)
    log.info("web page and API starting", extra={"url": f"http://{host}:{app.state.bound_port}/"})
    # a task of its own, so that cancelling us asks uvicorn to shut down gracefully instead of interrupting it
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.wait({task})
        task.result()
    finally:
        server.should_exit = True
        await asyncio.wait({task})
        sock.close()
