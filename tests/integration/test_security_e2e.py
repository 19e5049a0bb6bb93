"""Secrets and request limits against the app served by a real uvicorn on loopback (`gateway.api.app.serve`),
and against a running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.ops import Lab
from kit.runtime import running
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.common import gateway_yaml, publish
from gateway.api.app import create_app, serve
from gateway.api.context import ApiContext
from gateway.config.loader import check_text
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.registry import discover
from gateway.runtime import Runtime
from gateway.state.stage import StateStage
from simulators.services import Mosquitto

pytestmark = pytest.mark.integration

TOKEN = "sec-test-token-0123456789"
SPECS = discover()


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[tuple[str, StateStage]]:
    hub = Lab([MachineMeta("fdm-01", "Prusa", "3d_printer", "mqtt", "krg")]).stage
    app = create_app(ApiContext(site_id="krg", site_name="Kartech", machines=hub, metrics=Metrics(),
                                tokens={TOKEN: ("tester", "technician")}, history=None, health=dict))
    ready = asyncio.Event()
    server = asyncio.create_task(serve(app, "127.0.0.1", 0, ready))
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield f"127.0.0.1:{app.state.bound_port}", hub
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def test_no_token_in_uvicorns_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn logs the URL of every WebSocket (and, at debug level, headers and frames): the page's token is not
    in the URL, and a token put there, in a header or in the first frame is masked."""
    with caplog.at_level(logging.DEBUG):
        async with served() as (address, _), asyncio.timeout(20):
            live = f"ws://{address}/api/v1/live"
            async with connect(live) as ws:
                await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
                assert json.loads(await ws.recv())["type"] == "snapshot"
            async with connect(live, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                assert json.loads(await ws.recv())["type"] == "snapshot"
            async with connect(f"{live}?token={TOKEN}") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
    # the server's lines (the test's own websockets client logs what it sends)
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any("/api/v1/live?token=***" in line for line in lines), lines  # the request is logged, masked
    assert [line for line in lines if TOKEN in line] == []


async def _raw_request(address: str, head: str) -> str:
    """Send only the request head (no body) and return the status line of the answer."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode())
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize(("auth", "status"), [("", "401"), (f"Authorization: Bearer {TOKEN}\r\n", "413")])
async def test_a_300_mb_post_is_answered_before_its_body_is_sent(auth: str, status: str) -> None:
    """No token: 401; a token: 413 — both at once, from the headers, without waiting for (or reading) the body."""
    async with served() as (address, _), asyncio.timeout(5):
        line = await _raw_request(address, f"POST /api/v1/alerts/1/shelve HTTP/1.1\r\nHost: {address}\r\n{auth}"
                                           "Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n")
    assert line.startswith(f"HTTP/1.1 {status} ")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_of_a_running_gateway_hides_the_influx_password(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The InfluxDB URL comes from the environment with user:password in it; /health shows the sink's error
    without them."""
    site = f"sec{uuid.uuid4().hex[:8]}"
    text = gateway_yaml(site=site, broker_port=mosquitto.port, influx_url="${KARTECH_TEST_INFLUX_URL}",
                        database="kartech", data_dir=tmp_path, api_port=0, machines=1)
    env = {"KARTECH_BENCH_TOKEN": "y" * 20,
           "KARTECH_TEST_INFLUX_URL": f"http://kartech:S3cret@127.0.0.1:{_closed_port()}"}
    result = check_text(text, "sec.yaml", SPECS, env)
    assert result.config is not None, result.problems
    rt = Runtime(result.config, SPECS, data_dir=tmp_path, tokens={TOKEN: ("test", "admin")})
    async with running(rt):
        await asyncio.to_thread(publish, mosquitto.port, topic=f"bench/{site}", machines=1, publishers=1,
                                rate=0, seconds=10, count=5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as http:
            body: dict[str, Any] = {}
            async with asyncio.timeout(20):
                while body.get("sinks", {}).get("influxdb", {}).get("state") != "failing":
                    body = (await http.get("/api/v1/health")).json()
                    await asyncio.sleep(0.1)
    text_shown = json.dumps(body)
    assert "cannot reach InfluxDB at http://***@127.0.0.1:" in text_shown
    assert "S3cret" not in text_shown


async def test_data_dir_and_every_file_in_it_are_the_gateways_alone(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Outbox, local history and business store (and SQLite's -wal/-shm files): 0600 in a 0700 directory, even
    with the usual umask 022 and a data directory that already existed world-readable."""
    site = f"perm{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    text = gateway_yaml(site=site, broker_port=mosquitto.port, influx_url="http://127.0.0.1:1", database="k",
                        data_dir=data, api_port=0, machines=1)
    # local history instead of InfluxDB
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  influxdb:"))
    del lines[at:at + 2]
    text = "\n".join(lines).replace("local_history: {enabled: false}", "local_history: {enabled: true}")
    result = check_text(text, "perm.yaml", SPECS, {"KARTECH_BENCH_TOKEN": "y" * 20})
    assert result.config is not None, result.problems
    old_umask = os.umask(0o022)
    try:
        rt = Runtime(result.config, SPECS, data_dir=data, tokens={TOKEN: ("test", "admin")})
        async with running(rt):
            await asyncio.to_thread(publish, mosquitto.port, topic=f"bench/{site}", machines=1, publishers=1,
                                    rate=0, seconds=10, count=5)
            async with asyncio.timeout(20):
                while rt.metrics.total("readings_written_total") < 5:
                    await asyncio.sleep(0.05)
            files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.rglob("*") if p.is_file()}
    finally:
        os.umask(old_umask)
    assert {"outbox.sqlite", "history.sqlite", "business.sqlite", "outbox.sqlite-wal"} <= set(files), files
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
