"""A Moonraker in front of a simulated Klipper printer: a real WebSocket server speaking Moonraker's JSON-RPC 2.0.

Written from Moonraker's documentation and source (Arksine/moonraker: docs/external_api/*.md,
docs/printer_objects.md, moonraker/common.py), not from the gateway's driver:

- `ws://host:port/websocket`, JSON-RPC 2.0 in text frames, batches answered as a list;
- `server.info` (klippy_connected, klippy_state, ...), `server.connection.identify` (with `api_key`),
  `printer.objects.query` and `printer.objects.subscribe` (`{"eventtime": ..., "status": {...}}`, the status
  pruned to the requested fields, unknown objects left out), then `notify_status_update` with
  `[changed_fields, eventtime]` as Klipper's state changes, and `notify_proc_stat_update` every second;
- errors as Moonraker builds them: -32700 Parse error, -32600 Invalid Request, -32601 Method not found, 503
  "Klippy Host not connected", and a missing authorization as -32602 "Unauthorized" (Moonraker accepts the
  WebSocket upgrade without credentials and refuses the requests; `refuse_upgrade` makes it answer the upgrade
  with an HTTP status instead, as a reverse proxy in front of it may);
- `notify_klippy_shutdown`, `notify_klippy_disconnected` (every subscription dropped) and `notify_klippy_ready`.

The printer runs a job cycle: standby, heat, print (progress, layers, filament, durations), complete, cool, back to
standby (SDCARD_RESET_FILE). Tests drive the rest from their own thread: `klippy_shutdown()`, `klippy_disconnect()`,
`klippy_ready()`, `update(delta)`, `send_raw(frame)`, `freeze()`, `stop()` and `start()` again on the same port.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

LOOPBACK = "127.0.0.1"
ROOM_C = 22.0


@dataclass(frozen=True)
class Cycle:
    """The simulated printer's job cycle, in seconds of simulated time."""

    files: tuple[str, ...] = ("drone_arm_v3_abs.gcode", "sensor_housing_asa.gcode", "conveyor_scraper_petg.gcode")
    idle_s: float = 5.0
    heat_s: float = 8.0  # time constant of the heaters (63 % of the way to the target)
    print_s: float = 60.0
    hold_s: float = 5.0  # complete, then the plate is cleared (SDCARD_RESET_FILE: standby)
    layers: int = 120
    filament_mm: float = 5400.0
    nozzle_c: float = 245.0
    bed_c: float = 105.0
    file_size: int = 4_194_304


def initial_objects() -> dict[str, dict[str, Any]]:
    """Printer objects as Klipper reports them at start-up (Moonraker docs/printer_objects.md)."""
    return {
        "webhooks": {"state": "ready", "state_message": "Printer is ready"},
        "extruder": {"temperature": ROOM_C, "target": 0.0, "power": 0.0, "can_extrude": False,
                     "pressure_advance": 0.04, "smooth_time": 0.04, "motion_queue": None},
        "heater_bed": {"temperature": ROOM_C, "target": 0.0, "power": 0.0},
        "print_stats": {"filename": "", "total_duration": 0.0, "print_duration": 0.0, "filament_used": 0.0,
                        "state": "standby", "message": "", "info": {"total_layer": None, "current_layer": None}},
        "virtual_sdcard": {"file_path": None, "progress": 0.0, "is_active": False, "file_position": 0,
                           "file_size": 0},
        "display_status": {"message": "", "progress": 0.0},
    }


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Client:
    ws: ServerConnection
    authorized: bool
    identified: bool = False
    subscription: dict[str, list[str] | None] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # what this client was last told


class MoonrakerSim:
    def __init__(self, *, host: str = LOOPBACK, port: int = 0, api_key: str | None = None, seed: int = 1,
                 interval_s: float = 0.25, cycle: Cycle | None = None, refuse_upgrade: int | None = None,
                 name: str = "voron") -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.interval_s = interval_s
        self.cycle = cycle or Cycle()
        self.refuse_upgrade = refuse_upgrade
        self.name = name
        self.rng = random.Random(seed)
        self.objects = initial_objects()
        self.klippy = "ready"
        self.frozen = False
        self.phase = "idle"
        self.phase_s = 0.0
        self.job_index = 0
        self.requests: list[dict[str, Any]] = []  # every request object received, for tests
        self.upgrade_headers: list[Headers] = []
        self._t0 = time.monotonic()
        self._clients: set[Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- life -------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/websocket"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Listen (on the same port as before after a stop); returns the WebSocket URL."""
        if self.running:
            return self.url
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name=f"moonraker-sim:{self.name}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._error
        return self.url

    def stop(self) -> None:
        """Moonraker goes away: every connection closes and nothing listens until `start`."""
        if self._loop is not None and self._stop is not None and self.running:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server: Server = await serve(self._session, self.host, self.port, process_request=self._upgrade,
                                         ping_interval=None, max_size=1 << 20)
        except OSError as err:
            self._error = err
            self._ready.set()
            return
        self.port = next(iter(server.sockets)).getsockname()[1]
        ticker = asyncio.create_task(self._tick())
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            ticker.cancel()
            server.close()
            await server.wait_closed()
            self._clients.clear()

    def _upgrade(self, conn: ServerConnection, request: Request) -> Response | None:
        self.upgrade_headers.append(request.headers)
        if request.path.split("?")[0] != "/websocket":
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if self.refuse_upgrade is not None:
            return conn.respond(HTTPStatus(self.refuse_upgrade), "Unauthorized\n")
        return None

    # --- control from a test's thread -------------------------------------------------------------------------
    def _do(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._loop is None or not self.running:
            raise RuntimeError("the Moonraker simulator is not running")
        asyncio.run_coroutine_threadsafe(fn(), self._loop).result(10)

    def klippy_shutdown(self, message: str = "Shutdown due to M112 command") -> None:
        """Klipper's emergency stop: heaters off, `notify_klippy_shutdown`; the subscription stays."""
        async def go() -> None:
            self.klippy = "shutdown"
            self._set({"webhooks": {"state": "shutdown", "state_message": message},
                       "extruder": {"target": 0.0, "power": 0.0}, "heater_bed": {"target": 0.0, "power": 0.0}})
            self.phase, self.phase_s = "cool", 0.0
            await self._notify("notify_klippy_shutdown")
            await self._push()
        self._do(go)

    def klippy_disconnect(self) -> None:
        """The Klippy host process goes away: `notify_klippy_disconnected`, every subscription dropped."""
        async def go() -> None:
            self.klippy = "disconnected"
            for c in self._clients:
                c.subscription, c.sent = {}, {}
            await self._notify("notify_klippy_disconnected")
        self._do(go)

    def klippy_ready(self) -> None:
        """Klipper (re)started: a fresh printer (standby, heaters off), `notify_klippy_ready`."""
        async def go() -> None:
            temps = {k: self.objects[k]["temperature"] for k in ("extruder", "heater_bed")}
            self.objects = initial_objects()
            for k, t in temps.items():
                self.objects[k]["temperature"] = t
            self.klippy, self.phase, self.phase_s = "ready", "idle", 0.0
            for c in self._clients:
                c.subscription, c.sent = {}, {}
            await self._notify("notify_klippy_ready")
        self._do(go)

    def update(self, delta: dict[str, dict[str, Any]]) -> None:
        """Change printer objects (as Klipper would) and push the change to subscribers at once."""
        async def go() -> None:
            self._set(delta)
            await self._push()
        self._do(go)

    def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as it is to every client (malformed input for tests)."""
        async def go() -> None:
            for c in list(self._clients):
                await self._send(c, frame)
        self._do(go)

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) the printer's own changes: only `update` changes it meanwhile."""
        self.frozen = frozen

    def eventtime(self) -> float:
        """Klipper's monotonic clock."""
        return round(time.monotonic() - self._t0 + 1000.0, 6)

    # --- the printer ------------------------------------------------------------------------------------------
    def _set(self, delta: dict[str, dict[str, Any]]) -> None:
        for name, fields in delta.items():
            self.objects.setdefault(name, {}).update(copy.deepcopy(fields))

    def step(self, dt: float) -> None:
        """Advance the printer by `dt` seconds."""
        if self.klippy not in ("ready", "shutdown"):
            return
        c, o = self.cycle, self.objects
        ps, vsd, ext, bed = o["print_stats"], o["virtual_sdcard"], o["extruder"], o["heater_bed"]
        self.phase_s += dt
        for heater in (ext, bed):
            temp, target = heater["temperature"], heater["target"]
            goal = target if target > 0 else ROOM_C
            temp += (goal - temp) * (1 - math.exp(-dt / c.heat_s)) + self.rng.uniform(-0.05, 0.05)
            heater["temperature"] = round(temp, 2)
            heater["power"] = round(min(1.0, max(0.0, (target - temp) / 20 + 0.3)), 3) if target > 0 else 0.0
        ext["can_extrude"] = ext["temperature"] >= 170.0
        if self.klippy != "ready":
            return
        if self.phase == "idle" and self.phase_s >= c.idle_s:
            file = c.files[self.job_index % len(c.files)]
            self.job_index += 1
            self.phase, self.phase_s = "heat", 0.0
            ps.update(filename=file, state="printing", total_duration=0.0, print_duration=0.0, filament_used=0.0,
                      message="", info={"total_layer": c.layers, "current_layer": 0})
            vsd.update(file_path=f"/home/pi/printer_data/gcodes/{file}", progress=0.0, is_active=True,
                       file_position=0, file_size=c.file_size)
            o["display_status"].update(progress=0.0, message="Heating...")
            ext["target"], bed["target"] = c.nozzle_c, c.bed_c
        elif self.phase == "heat":
            ps["total_duration"] = round(ps["total_duration"] + dt, 6)
            if ext["temperature"] >= c.nozzle_c - 3 and bed["temperature"] >= c.bed_c - 3:
                self.phase, self.phase_s = "print", 0.0
                o["display_status"]["message"] = "Printing"
        elif self.phase == "print":
            ps["total_duration"] = round(ps["total_duration"] + dt, 6)
            ps["print_duration"] = round(ps["print_duration"] + dt, 6)
            progress = min(1.0, vsd["progress"] + dt / c.print_s)
            vsd["progress"] = round(progress, 4)
            vsd["file_position"] = int(progress * c.file_size)
            o["display_status"]["progress"] = round(progress, 2)
            ps["filament_used"] = round(progress * c.filament_mm, 5)
            ps["info"] = {"total_layer": c.layers, "current_layer": max(1, math.ceil(progress * c.layers))}
            if progress >= 1.0:
                self.phase, self.phase_s = "cool", 0.0
                ps["state"] = "complete"
                vsd["is_active"] = False
                o["display_status"]["message"] = "Print complete"
                ext["target"], bed["target"] = 0.0, 0.0
        elif self.phase == "cool" and self.phase_s >= c.hold_s:
            # the operator clears the plate: SDCARD_RESET_FILE
            self.phase, self.phase_s = "idle", 0.0
            ps.update(filename="", state="standby", total_duration=0.0, print_duration=0.0, filament_used=0.0,
                      message="", info={"total_layer": None, "current_layer": None})
            vsd.update(file_path=None, progress=0.0, is_active=False, file_position=0, file_size=0)
            o["display_status"].update(progress=0.0, message="")

    async def _tick(self) -> None:
        last = time.monotonic()
        next_stats = last + 1.0
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            if not self.frozen:
                self.step(now - last)
                await self._push()
            last = now
            if now >= next_stats:
                next_stats = now + 1.0
                await self._notify("notify_proc_stat_update", [self._proc_stats()])

    def _proc_stats(self) -> dict[str, Any]:
        return {"moonraker_stats": {"time": time.time(), "cpu_usage": round(self.rng.uniform(1, 4), 2),
                                    "memory": 23636, "mem_units": "kB"},
                "cpu_temp": round(self.rng.uniform(42, 48), 3),
                "network": {"lo": {"rx_bytes": 114555457, "tx_bytes": 114555457, "bandwidth": 2911.49}},
                "system_cpu_usage": {"cpu": round(self.rng.uniform(1, 5), 2)},
                "websocket_connections": len(self._clients)}

    # --- the protocol -----------------------------------------------------------------------------------------
    def _status(self, objects: dict[str, list[str] | None]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, fields in objects.items():
            if name not in self.objects:
                continue  # Moonraker leaves out objects that do not exist, without an error
            obj = self.objects[name]
            out[name] = copy.deepcopy(obj if fields is None else {k: v for k, v in obj.items() if k in fields})
        return out

    async def _push(self) -> None:
        """notify_status_update to each subscriber: only the fields that changed since it was last told."""
        if self.klippy not in ("ready", "shutdown"):
            return
        for c in list(self._clients):
            if not c.subscription:
                continue
            now = self._status(c.subscription)
            delta: dict[str, dict[str, Any]] = {}
            for name, fields in now.items():
                told = c.sent.setdefault(name, {})
                changed = {k: v for k, v in fields.items() if told.get(k, _NEVER) != v}
                if changed:
                    delta[name] = changed
                    told.update(copy.deepcopy(changed))
            if delta:
                await self._send(c, {"jsonrpc": "2.0", "method": "notify_status_update",
                                     "params": [delta, self.eventtime()]})

    async def _notify(self, method: str, params: list[Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            msg["params"] = params
        for c in list(self._clients):
            if c.authorized:
                await self._send(c, msg)

    async def _send(self, c: Client, msg: dict[str, Any] | list[Any] | str | bytes) -> None:
        frame = msg if isinstance(msg, (str, bytes)) else json.dumps(msg)
        try:
            await c.ws.send(frame)
        except ConnectionClosed:
            self._clients.discard(c)

    async def _session(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        key = ws.request.headers.get("X-Api-Key")
        c = Client(ws, authorized=self.api_key is None or key == self.api_key)
        self._clients.add(c)
        try:
            async for frame in ws:
                response = self._dispatch(c, frame)
                if response is not None:
                    await self._send(c, response)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(c)

    def _dispatch(self, c: Client, frame: str | bytes) -> dict[str, Any] | list[Any] | None:
        try:
            obj = json.loads(frame)
        except ValueError:
            return _error(-32700, "Parse error", None)
        if isinstance(obj, list):
            answers = [a for a in (self._process(c, item) for item in obj) if a is not None]
            return answers or None
        return self._process(c, obj)

    def _process(self, c: Client, obj: Any) -> dict[str, Any] | None:
        if not isinstance(obj, dict):
            return _error(-32600, "Invalid Request", None)
        req_id = obj.get("id")
        if obj.get("jsonrpc") != "2.0":
            return _error(-32600, "Invalid Request", req_id)
        self.requests.append(obj)
        method = obj.get("method")
        if not isinstance(method, str):
            return None if "method" not in obj else _error(-32600, "Invalid Request", req_id)
        handler = self._methods().get(method)
        if handler is None:
            return _error(-32601, "Method not found", req_id)
        params = obj.get("params", {})
        if not isinstance(params, dict):
            return _error(-32602, "Invalid params:", req_id)
        try:
            auth_required, fn = handler
            if auth_required and not c.authorized:
                raise RpcFailure(-32602, "Unauthorized")  # a 401, as Moonraker's execute_method maps it
            result = fn(c, params)
        except RpcFailure as err:
            return _error(err.code, err.message, req_id)
        return None if req_id is None else {"jsonrpc": "2.0", "result": result, "id": req_id}

    def _methods(self) -> dict[str, tuple[bool, Callable[[Client, dict[str, Any]], Any]]]:
        return {
            "server.info": (True, self._server_info),
            "server.connection.identify": (False, self._identify),
            "printer.objects.query": (True, self._query),
            "printer.objects.subscribe": (True, self._subscribe),
        }

    def _server_info(self, c: Client, params: dict[str, Any]) -> dict[str, Any]:
        return {"klippy_connected": self.klippy != "disconnected", "klippy_state": self.klippy,
                "components": ["database", "file_manager", "klippy_apis", "machine", "data_store", "history",
                               "authorization", "websockets"],
                "failed_components": [], "registered_directories": ["config", "gcodes", "logs"], "warnings": [],
                "websocket_count": len(self._clients), "moonraker_version": "v0.9.3-0-gsimulated",
                "api_version": [1, 5, 0], "api_version_string": "1.5.0"}

    def _identify(self, c: Client, params: dict[str, Any]) -> dict[str, Any]:
        if c.identified:
            raise RpcFailure(400, "Connection already identified")
        for key in ("client_name", "version", "type", "url"):
            if key not in params:
                raise RpcFailure(400, f"No data for argument: {key}")
        api_key = params.get("api_key")
        if api_key is not None and self.api_key is not None:
            if api_key != self.api_key:
                raise RpcFailure(-32602, "Invalid API Key")
            c.authorized = True
        elif not c.authorized:
            raise RpcFailure(-32602, "Unauthorized")
        c.identified = True
        return {"connection_id": id(c)}

    def _objects(self, params: dict[str, Any]) -> dict[str, list[str] | None]:
        if self.klippy == "disconnected":
            raise RpcFailure(503, "Klippy Host not connected")
        objects = params.get("objects", {})
        if not isinstance(objects, dict) or not all(v is None or isinstance(v, list) for v in objects.values()):
            raise RpcFailure(400, "Invalid argument: objects")
        return objects

    def _query(self, c: Client, params: dict[str, Any]) -> dict[str, Any]:
        return {"eventtime": self.eventtime(), "status": self._status(self._objects(params))}

    def _subscribe(self, c: Client, params: dict[str, Any]) -> dict[str, Any]:
        objects = self._objects(params)
        status = self._status(objects)
        c.subscription = objects  # a new request replaces the previous one; {} cancels it
        c.sent = copy.deepcopy(status)
        return {"eventtime": self.eventtime(), "status": status}


_NEVER = object()


def _error(code: int, message: str, req_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": req_id}
