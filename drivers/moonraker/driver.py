"""Moonraker driver: one WebSocket to one printer's Moonraker, JSON-RPC 2.0 on it.

The session follows Moonraker's documented start-up sequence (docs/external_api/introduction.md, "Websocket
setup"): connect (the API key in the X-Api-Key header of the upgrade request), ask `server.info` for Klippy's
state, and once Klippy is ready `printer.objects.subscribe`; the response carries the full status, and
`notify_status_update` deltas follow. `notify_klippy_shutdown` makes the printer an error,
`notify_klippy_disconnected` makes it offline (Moonraker is up, Klipper is not), `notify_klippy_ready` means Klipper
restarted: the driver subscribes again. While Klippy is not ready, `server.info` is asked again every 2 s, as the
docs advise.

One task reads every frame in order — results, errors, notifications — so the full status of a subscription is
applied before the deltas that follow it. A lost WebSocket ends `run` with `DriverUnavailable`; the supervisor
logs it once, retries with capped, jittered backoff (`reconnect_max_s`) and logs once when the printer is back.
Only status is ever requested: the driver never sends G-code or changes anything on the printer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from drivers.moonraker import rpc
from drivers.moonraker.config import MoonrakerMachine
from drivers.moonraker.status import KLIPPY_STATES, KlipperPrinter, Update, objects_param
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable
from gateway.reading import Reading, now_ns

log = logging.getLogger(__name__)

KLIPPY_POLL_S = 2.0  # server.info again while Klippy is not ready (Moonraker docs)
NOTIFY_KLIPPY = {"notify_klippy_ready": "ready", "notify_klippy_shutdown": "shutdown",
                 "notify_klippy_disconnected": "disconnected"}
MAX_FRAME_BYTES = 4 << 20


class RpcError(Exception):
    def __init__(self, error: rpc.Error) -> None:
        super().__init__(f"{error.message} (code {error.code})")
        self.error = error


class MoonrakerDriver:
    def __init__(self, machine: MoonrakerMachine) -> None:
        self.machine = machine
        self.name = f"moonraker:{machine.id}"
        self.machine_ids = [machine.id]
        self.retry = Retry(initial_s=1.0, cap_s=machine.reconnect_max_s, immediate_first=True)
        # the printer's job outlives a reconnect: a dropped WebSocket is not a new job
        self.printer = KlipperPrinter(machine.id)
        self.online = False

    def where(self) -> str:
        return f'printer "{self.machine.name}" ({self.machine.id}): Moonraker at {self.machine.url}'

    async def run(self, ctx: DriverContext) -> None:
        m = self.machine
        headers = {"X-Api-Key": m.api_key} if m.api_key else None
        try:
            ws = await connect(m.url, additional_headers=headers, open_timeout=m.request_timeout_s, proxy=None,
                               ping_interval=10, ping_timeout=m.request_timeout_s, max_size=MAX_FRAME_BYTES,
                               user_agent_header="kartech-gateway")
        except InvalidStatus as err:
            code = err.response.status_code
            hint = ("check api_key (sent as X-Api-Key) against moonraker.conf [authorization]"
                    if code in (401, 403) else "check the url: it must be Moonraker's /websocket")
            raise DriverUnavailable(f"{self.where()} refused the WebSocket with HTTP {code}; {hint}") from err
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as err:
            raise DriverUnavailable(f"{self.where()} cannot be reached ({type(err).__name__}: {err}); check "
                                    "that the printer is on, the host and port (7125 by default)") from err
        try:
            await Session(self, ws, ctx).run()
        except ConnectionClosed as err:
            await self._offline(ctx)
            raise DriverUnavailable(f"{self.where()} closed the connection ({err})") from err
        except DriverUnavailable:
            await self._offline(ctx)
            raise
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await ws.close()

    async def _offline(self, ctx: DriverContext) -> None:
        """Say at once that the printer is offline (instead of waiting for its data to go stale)."""
        if self.online:
            self.online = False
            await ctx.emit(self.printer.on_link_lost(now_ns()))


class Session:
    """One WebSocket's life: a reader applying every frame in order, and the start-up sequence beside it."""

    def __init__(self, driver: MoonrakerDriver, ws: ClientConnection, ctx: DriverContext) -> None:
        self.d = driver
        self.m = driver.machine
        self.ws = ws
        self.ctx = ctx
        self.printer = driver.printer
        self.ids = itertools.count(1)
        # request id -> (its future, a handler the reader applies to the result in frame order)
        self.pending: dict[int, tuple[asyncio.Future[Any], OnResult | None]] = {}
        self.klippy_events: asyncio.Queue[str] = asyncio.Queue()
        self.emit_lock = asyncio.Lock()
        self.last_emit = time.monotonic()
        self.subscribed = False
        self.readable = False  # Klippy answers (ready, shutdown or error): its state is repeated while quiet

    async def run(self) -> None:
        self.printer.on_connected()
        reader = asyncio.create_task(self._read(), name=f"{self.d.name}:read")
        main = asyncio.create_task(self._main(), name=f"{self.d.name}:main")
        try:
            done, _ = await asyncio.wait({reader, main}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the first to fail says why
        finally:
            for task in (reader, main):
                task.cancel()
            await asyncio.gather(reader, main, return_exceptions=True)

    # --- emitting -----------------------------------------------------------------------------------------
    async def _emit(self, produce: Callable[[], list[Reading] | Update]) -> None:
        """Compute and emit under one lock, so readings reach the pipeline in the order they were computed."""
        async with self.emit_lock:
            out = produce()
            up = out if isinstance(out, Update) else Update(readings=out)
            for bad in up.bad:
                self.ctx.bad_input(bad.reason, self.m.id, bad.detail)
            if up.readings:
                self.last_emit = time.monotonic()
                self.d.online = True
                await self.ctx.emit(up.readings)

    # --- the start-up sequence ----------------------------------------------------------------------------
    async def _main(self) -> None:
        klippy = await self._server_info()
        while True:
            await self._enter(klippy)
            klippy = await self._next_klippy(klippy)

    async def _enter(self, klippy: str) -> None:
        """Klippy is now `klippy`: say so, subscribe when it can be read, report the connection."""
        await self._emit(lambda: self.printer.on_klippy(klippy, now_ns()))
        self.readable = klippy in ("ready", "shutdown", "error")
        if self.readable:
            # ready: Klipper (re)started, so its objects are new; shutdown: still readable, temperatures included
            if klippy == "ready" or (klippy == "shutdown" and not self.subscribed):
                await self._subscribe()
            self.ctx.connected()
            log.info("%s: Klippy %s", self.d.name, klippy, extra={"driver": self.d.name})
        else:
            self.subscribed = False  # Moonraker drops every subscription when Klippy goes away
            self.ctx.disconnected(f"{self.d.where()} is up, but Klipper is {klippy}; the printer is offline until "
                                  "Klipper is ready (see klippy.log on the printer)", retrying=False)

    async def _next_klippy(self, current: str) -> str:
        """Klippy's next state: a notify_klippy_* notification; while it is not ready, also server.info every 2 s."""
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives as
                # the awaited result does, and a loop around it then never ends (the driver could not be stopped)
                async with asyncio.timeout(None if current == "ready" else KLIPPY_POLL_S):
                    return await self.klippy_events.get()
            except TimeoutError:
                new = await self._server_info()
                if new != current:
                    return new

    async def _server_info(self) -> str:
        try:
            info = await self._call("server.info")
        except RpcError as err:
            raise self._refused(err) from err
        state = info.get("klippy_state") if isinstance(info, dict) else None
        if not isinstance(state, str) or state not in KLIPPY_STATES:
            self.ctx.bad_input("unexpected_shape", self.m.id,
                               f"server.info without a known klippy_state: {info!r}"[:200])
            return "startup"
        return state

    async def _subscribe(self) -> None:
        async def apply(result: Any) -> None:
            status = result.get("status") if isinstance(result, dict) else None
            if not isinstance(status, dict):
                raise DriverUnavailable(f"{self.d.where()} answered printer.objects.subscribe without a status "
                                        f"object: {result!r}"[:300])
            self.subscribed = True
            await self._emit(lambda: self.printer.on_status(status, now_ns(), full=True))

        try:
            await self._call("printer.objects.subscribe", {"objects": objects_param()}, apply)
        except RpcError as err:
            raise self._refused(err) from err

    def _refused(self, err: RpcError) -> DriverUnavailable:
        if err.error.unauthorized:
            how = ("refused the API key" if self.m.api_key else
                   "needs an API key (the gateway is not one of its trusted clients)")
            return DriverUnavailable(f"{self.d.where()} {how} ({err}); set api_key: ${{ENV_VAR}} to the key of "
                                     "moonraker.conf [authorization] (Mainsail: Settings > Authorization)")
        return DriverUnavailable(f"{self.d.where()} answered with an error: {err}")

    # --- requests -----------------------------------------------------------------------------------------
    async def _call(self, method: str, params: dict[str, Any] | None = None,
                    on_result: OnResult | None = None) -> Any:
        req_id = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = (fut, on_result)
        try:
            await self.ws.send(rpc.request(method, req_id, params))
            async with asyncio.timeout(self.m.request_timeout_s):
                return await fut
        except TimeoutError as err:
            raise DriverUnavailable(f"{self.d.where()} did not answer {method} within "
                                    f"{self.m.request_timeout_s:g} s") from err
        finally:
            self.pending.pop(req_id, None)

    # --- the reader ---------------------------------------------------------------------------------------
    async def _read(self) -> None:
        """Every frame in order; when nothing was sent for expected_interval_s, the current values again."""
        quiet_s = self.m.expected_interval_s
        while True:
            frame = None
            try:
                async with asyncio.timeout(quiet_s):  # not wait_for: see _next_klippy
                    frame = await self.ws.recv()
            except TimeoutError:
                pass
            if frame is not None:
                await self._handle(rpc.decode(frame))
            if self.readable and time.monotonic() - self.last_emit >= quiet_s:
                await self._emit(lambda: self.printer.snapshot(now_ns()))

    async def _handle(self, msg: rpc.Message) -> None:
        match msg:
            case rpc.Malformed(reason=reason, detail=detail):
                self.ctx.bad_input(reason, self.m.id, detail)
            case rpc.Result(id=req_id, value=value):
                await self._resolve(req_id, value, None)
            case rpc.Error(id=int() as req_id) if req_id in self.pending:
                await self._resolve(req_id, None, RpcError(msg))
            case rpc.Error(code=code, message=message):
                self.ctx.bad_input("unexpected_shape", self.m.id,
                                   f"an error for no request of ours: {message} (code {code})")
            case rpc.Notification(method="notify_status_update", params=params):
                await self._status_update(params)
            case rpc.Notification(method=method) if method in NOTIFY_KLIPPY:
                self.klippy_events.put_nowait(NOTIFY_KLIPPY[method])
            case rpc.Notification():
                pass  # Moonraker broadcasts many more (proc stats, file lists, G-code responses): not ours

    async def _resolve(self, req_id: int, value: Any, error: RpcError | None) -> None:
        """Settle a request; a result's handler runs here, before the reader takes the next frame."""
        entry = self.pending.get(req_id)
        if entry is None or entry[0].done():
            return  # an answer after its request timed out
        fut, on_result = entry
        if error is None and on_result is not None:
            try:
                await on_result(value)
            except DriverUnavailable as err:
                fut.set_exception(err)
                return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)

    async def _status_update(self, params: object) -> None:
        if not (isinstance(params, list) and params and isinstance(params[0], dict)):
            self.ctx.bad_input("unexpected_shape", self.m.id,
                               f"notify_status_update params are not [status, eventtime]: {params!r}"[:200])
            return
        if not self.subscribed:
            return  # a delta of a subscription that ended with Klippy
        status = params[0]
        await self._emit(lambda: self.printer.on_status(status, now_ns()))


OnResult = Callable[[Any], Awaitable[None]]
