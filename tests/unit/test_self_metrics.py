"""gateway/self_metrics.py: the gateway's own metrics as `kartech_gateway` line protocol."""

from __future__ import annotations

import asyncio
import gzip

import httpx

from gateway.config.models import InfluxV1, InfluxV2
from gateway.metrics import Metrics
from gateway.self_metrics import SelfMetricsWriter, parse_exposition, snapshot_lines


def metrics() -> Metrics:
    m = Metrics()
    m.describe("readings_received_total", "counter", "Readings received.")
    m.describe("readings_dropped_total", "counter", "Dropped.")
    m.describe("driver_connected", "gauge", "1 while connected.")
    m.inc("readings_received_total", 120, driver="mqtt")
    m.set("driver_connected", 1, driver="mqtt")
    m.inc("bad_input_total", driver="mqtt", reason='bad "json", really')
    m.gauge_fn("sink_queue_readings", lambda: 7.0, sink="influxdb")
    return m


def test_one_line_per_label_set_and_zero_for_uncounted_counters() -> None:
    lines = snapshot_lines(metrics(), site="kartech", host="gw 1", ts_ns=1_700_000_000_000_000_000)
    assert lines == [
        "kartech_gateway,host=gw\\ 1,site=kartech readings_dropped_total=0.0 1700000000000000000",
        "kartech_gateway,driver=mqtt,host=gw\\ 1,site=kartech driver_connected=1.0,readings_received_total=120.0 "
        "1700000000000000000",
        'kartech_gateway,driver=mqtt,host=gw\\ 1,reason=bad\\ "json"\\,\\ really,site=kartech bad_input_total=1.0 '
        "1700000000000000000",
        "kartech_gateway,host=gw\\ 1,sink=influxdb,site=kartech sink_queue_readings=7.0 1700000000000000000",
    ]


def test_precision_and_label_unescaping() -> None:
    series, types = parse_exposition(metrics().render(), "kartech")
    assert series[(("driver", "mqtt"), ("reason", 'bad "json", really'))] == {"bad_input_total": 1.0}
    assert types["driver_connected"] == "gauge"
    assert snapshot_lines(metrics(), site="s", host="h", ts_ns=1_700_000_000_123_456_789, precision="s")[0]\
        .endswith(" 1700000000")


def test_writer_posts_to_v1_and_v2_and_survives_a_failure() -> None:
    seen: list[httpx.Request] = []
    fail = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if fail[0]:
            fail[0] = False
            return httpx.Response(503, text="busy")
        return httpx.Response(204)

    async def run() -> list[bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            v1 = SelfMetricsWriter(metrics(), InfluxV1(version=1, url="http://i:8086", database="db", username="u",
                                                       password="p"), site="s", host="h", client=client,
                                   clock_ns=lambda: 5)
            v2 = SelfMetricsWriter(metrics(), InfluxV2(version=2, url="http://i:8086", org="o", bucket="b",
                                                       token="t"), site="s", host="h", client=client,
                                   clock_ns=lambda: 5)
            return [await v1.write_once(), await v1.write_once(), await v2.write_once()]

    assert asyncio.run(run()) == [False, True, True]
    assert seen[1].url.path == "/write"
    assert seen[1].url.params["db"] == "db"
    assert seen[1].headers["authorization"].startswith("Basic ")
    assert seen[2].url.path == "/api/v2/write"
    assert seen[2].headers["authorization"] == "Token t"
    assert seen[2].headers["content-encoding"] == "gzip"  # the one writer: gzip as configured, like telemetry
    assert b"kartech_gateway,driver=mqtt,host=h,site=s" in gzip.decompress(seen[2].content)
