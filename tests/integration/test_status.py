"""`kartech status` against a running gateway: per driver and sink, the counters of /metrics in readable tables."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from kit.runtime import running

from benchmarks.common import SIGNALS_PER_MESSAGE, gateway_yaml, publish
from gateway.cli import main
from gateway.config.loader import check_text
from gateway.registry import discover
from gateway.runtime import Runtime
from simulators.services import InfluxDB1, Mosquitto

SPECS = discover()
TOKEN = "status-test-token-0123456789"


def row(out: str, name: str) -> list[str]:
    """The cells of the table row that starts with `name` (cells are separated by two or more spaces)."""
    for line in out.splitlines():
        if line.startswith(name + " "):
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row {name!r} in:\n{out}")


async def test_status_prints_driver_and_sink_tables(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tag = uuid.uuid4().hex[:8]
    db, site = f"st_{tag}", f"st{tag}"
    text = gateway_yaml(site=site, broker_port=mosquitto.port, influx_url=influxdb.url, database=db,
                        data_dir=tmp_path, api_port=0, machines=5)
    result = check_text(text, "status.yaml", SPECS, {"KARTECH_BENCH_TOKEN": "y" * 20})
    assert result.config is not None, result.problems
    rt = Runtime(result.config, SPECS, data_dir=tmp_path, tokens={TOKEN: ("test", "admin")})
    async with running(rt):
        sent = await asyncio.to_thread(publish, mosquitto.port, topic=f"bench/{site}", machines=5, publishers=1,
                                       rate=0, seconds=10, count=100)
        readings = sent.sent * SIGNALS_PER_MESSAGE
        async with asyncio.timeout(20):
            while rt.metrics.total("readings_written_total") < readings:
                await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{rt.api_port}"
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["status", "--url", url, "--token", TOKEN]) == 0
        out = capsys.readouterr().out
        assert await asyncio.to_thread(main, ["status", "--url", url]) == 0
        anonymous = capsys.readouterr().out

    assert out.startswith(f"gateway {url} — ok, version ")
    assert "outbox: ok, " in out
    header = row(out, "DRIVER")
    assert header == ["DRIVER", "STATE", "RECEIVED", "COMMITTED", "BAD INPUT", "RECONNECTS", "LAST ERROR"]
    assert row(out, "mqtt:lab") == ["mqtt:lab", "connected", f"{readings:,}", f"{readings:,}", "0", "0"]
    assert row(out, "SINK") == ["SINK", "STATE", "WRITTEN", "QUEUED", "DEAD-LETTERED", "DROPPED", "OLDEST QUEUED",
                                "WRITE LATENCY", "RETRIES", "LAST ERROR"]
    sink = row(out, "influxdb")
    assert sink[:7] == ["influxdb", "ok", f"{readings:,}", "0", "0", "0", "0.0 s"]
    assert re.fullmatch(r"\d+ ms", sink[7])
    assert sink[8] == "0"
    # without a token: health only, counters shown as '-', and how to get them
    assert row(anonymous, "mqtt:lab")[:4] == ["mqtt:lab", "connected", "-", "-"]
    assert "counters need an API token" in anonymous


def test_status_reports_an_unreachable_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    from simulators.services import free_port

    assert main(["status", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "not reachable" in capsys.readouterr().err
