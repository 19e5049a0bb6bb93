"""The API served by a real uvicorn (`gateway.api.app.serve`), and the live page in a real headless Chromium.

The browser test needs Debian's `/usr/bin/chromium` and the `playwright` Python package (its bundled browsers
are not used); without them it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kit.ops import Lab
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.api.app import create_app, serve
from gateway.api.context import ApiContext
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Quality, Reading, Value, now_ns
from gateway.state.stage import StateStage

pytestmark = pytest.mark.integration

TOKEN = "page-test-token"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOT = Path("/tmp/kartech-page.png")
MACHINES = [
    MachineMeta("fdm-01", "Prusa MK4 #1", "3d_printer", "mqtt", "krg", lab="Prototyping shop"),
    MachineMeta("fdm-02", "Prusa MK4 #2", "3d_printer", "mqtt", "krg", lab="Prototyping shop"),
    MachineMeta("cnc-01", "DMG Mori CMX 600", "cnc_mill", "opcua", "krg", lab="Prototyping shop"),
    MachineMeta("laser-01", "Trotec Speedy 400", "laser_cutter", "opcua", "krg", lab="Prototyping shop"),
    MachineMeta("furnace-01", "Nabertherm LHT 04/17", "furnace", "opcua", "krg", lab="Materials lab"),
    MachineMeta("xrf-01", "XRF analyser", "analyser", "serial", "krg", lab="Materials lab"),
    MachineMeta("env-01", "Air quality, hall A", "env_sensor", "mqtt", "krg", lab="Ecology lab"),
]


def feed(hub: Lab) -> None:
    at = now_ns()

    def r(machine: str, signal: str, value: Value, unit: str | None = None,
          quality: Quality = Quality.GOOD) -> Reading:
        return Reading(machine, signal, value, unit, quality, at, at)

    hub.update([
        r("fdm-01", "state", "running"), r("fdm-01", "nozzle_temp", 215.5, "degC"),
        r("fdm-01", "bed_temp", 60.0, "degC"), r("fdm-01", "progress", 42.0, "percent"),
        r("fdm-01", "filament_used", 12.3456, "m"),
        r("fdm-02", "state", "paused"), r("fdm-02", "nozzle_temp", 180.2, "degC"),
        r("fdm-02", "door_open", True),
        r("cnc-01", "state", "error"), r("cnc-01", "spindle_rpm", None, "rpm", Quality.BAD),
        r("cnc-01", "alarm", "E-214 spindle overload"),
        r("laser-01", "state", "idle"), r("laser-01", "door_open", False), r("laser-01", "power", 0.08, "kW"),
        r("furnace-01", "state", "maintenance"), r("furnace-01", "chamber_temp", 24.0, "degC"),
        r("env-01", "pm2_5", 8.4, "ug/m3"), r("env-01", "co2", 612, "ppm", Quality.UNCERTAIN),
    ])


async def history(machine: str, signal: str, start_ns: int, end_ns: int,
                  limit: int) -> list[tuple[int, Value, str]]:
    step = (end_ns - start_ns) // 60
    rows: list[tuple[int, Value, str]] = [
        (start_ns + i * step, 200.0 + 15.0 * (i % 20) / 20 + (i // 20), "good") for i in range(60)]
    return rows[:limit]


def make_app(hub: StateStage) -> FastAPI:
    ctx = ApiContext(site_id="krg", site_name="Kartech · Karaganda", machines=hub, metrics=Metrics(),
                     tokens={TOKEN: ("tester", "technician")}, history=history,
                     health=lambda: {"problems": []})
    return create_app(ctx)


# --- serve() in the test's own event loop ------------------------------------------------------------------
async def test_serve_binds_port_0_streams_live_and_stops_when_cancelled() -> None:
    hub = Lab(MACHINES)
    feed(hub)
    app = make_app(hub.stage)
    ready = asyncio.Event()
    server = asyncio.create_task(serve(app, "127.0.0.1", 0, ready))
    async with asyncio.timeout(10):
        await ready.wait()
    port = app.state.bound_port
    assert port > 0
    base = f"http://127.0.0.1:{port}"
    live_url = f"ws://127.0.0.1:{port}/api/v1/live"
    async with asyncio.timeout(20):
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/api/v1/health")).json()["status"] == "ok"
            assert (await http.get("/api/v1/machines")).status_code == 401

        async with connect(live_url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": "wrong"}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401

        async with connect(live_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            hub.update([Reading("fdm-01", "nozzle_temp", 230.0, "degC", Quality.GOOD, now_ns(), now_ns())])
            update = json.loads(await ws.recv())
            assert update["machine"]["signals"]["nozzle_temp"]["value"] == 230.0
        # the server notices the client leaving and unsubscribes; the hub has no event to await for that
        while hub.stage.fanout.subscriber_count():
            await asyncio.sleep(0.01)

        staying = await connect(live_url)
        await staying.send(json.dumps({"type": "auth", "token": TOKEN}))
        await staying.recv()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        with pytest.raises(ConnectionClosed) as shut:
            await staying.recv()
        assert shut.value.rcvd is not None
        assert shut.value.rcvd.code == 1012  # "service restart": the browser page reconnects
        assert hub.stage.fanout.subscriber_count() == 0
        with pytest.raises(httpx.ConnectError):
            await httpx.AsyncClient().get(f"{base}/api/v1/health")


# --- the page in a browser -------------------------------------------------------------------------------
class ThreadServer:
    """The app served by `serve()` in an event loop of its own thread, as a sync test (Playwright) needs."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(self.app, "127.0.0.1", 0, ready))
        await ready.wait()
        self.base_url = f"http://127.0.0.1:{self.app.state.bound_port}/"
        self._started.set()
        await self._stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` in the server's loop (the hub and its queues belong to it) and wait for it."""
        assert self._loop is not None

        async def run() -> None:
            fn(*args)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=5)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        assert self._started.wait(timeout=10), "the web server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@pytest.fixture
def browser_needs() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("python package playwright not installed")


@pytest.fixture
def live_server() -> Iterator[tuple[ThreadServer, Lab]]:
    hub = Lab(MACHINES)
    feed(hub)
    with ThreadServer(make_app(hub.stage)) as server:
        yield server, hub


@pytest.mark.usefixtures("browser_needs")
def test_page_without_operations_services_logs_in_and_updates_live(live_server: tuple[ThreadServer, Lab]) -> None:
    """A gateway without the business store (no alerts, maintenance or billing): the board and the machine page
    still work, live, with no script error. The whole app against the virtual lab: test_web_app.py."""
    from playwright.sync_api import expect, sync_playwright

    server, hub = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            # a Content-Security-Policy violation shows up as a console error ("Refused to ...")
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                    and "status of 503" not in msg.text else None)
            page.goto(server.base_url)
            expect(page.locator("#site-name")).to_have_text("Kartech · Karaganda")
            page.fill("#token", TOKEN)
            page.click("#login-form button[type=submit]")

            tile = page.locator('.tile[data-id="fdm-01"]')
            expect(tile).to_be_visible()
            expect(page.locator("#conn-text")).to_have_text("Онлайн")
            expect(tile.locator(".badge")).to_have_text("Работает")
            expect(page.locator(".tile")).to_have_count(len(MACHINES))
            page.select_option("#f-state", "error")
            expect(page.locator(".tile")).to_have_count(1)
            page.select_option("#f-state", "")

            tile.locator(".open").click()
            nozzle = page.locator('.values .sig[data-signal="nozzle_temp"]')
            expect(nozzle).to_contain_text("215,5\u00a0°C")
            server.call(hub.update, [Reading("fdm-01", "nozzle_temp", 231.75, "degC", Quality.GOOD,
                                             now_ns(), now_ns())])
            expect(nozzle).to_contain_text("231,8\u00a0°C")  # live, without a reload
            expect(page.locator(".chart-box path.line").first).to_be_visible()

            page.click('button[data-lang="en"]')
            expect(page.locator(".machine-head .badge")).to_have_text("Running")
            assert page.evaluate("localStorage.getItem('kartech.token')") == TOKEN
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert errors == []
        finally:
            browser.close()


@pytest.mark.usefixtures("browser_needs")
def test_docs_work_without_internet_under_the_csp(live_server: tuple[ThreadServer, Lab]) -> None:
    """Swagger UI comes from the gateway itself: every request stays on the gateway, nothing breaks the CSP."""
    from playwright.sync_api import expect, sync_playwright

    server, _ = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            requested: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("request", lambda req: requested.append(req.url))
            response = page.goto(f"{server.base_url}docs")
            assert response is not None
            assert "default-src 'none'" in response.headers["content-security-policy"]
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Kartech Gateway")
            expect(page.locator(".opblock-summary-path", has_text="/api/v1/machines").first).to_be_visible()
            assert errors == []
            assert requested
            assert [url for url in requested if not url.startswith(server.base_url)] == []
        finally:
            browser.close()
