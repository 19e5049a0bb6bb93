"""Lose nothing: kill -9, a poison line, InfluxDB away, a full outbox, an unwritable or full disk.

The kill tests run the gateway as a real process (`kartech run --config FILE`) and kill it by its PID; the others
run a Runtime in the test's event loop. Every test reconciles the exact published set (per machine: count and sum
of a sequence field) with what InfluxDB holds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from kit import runtime
from kit.poll import until, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.common import (
    SIGNALS_PER_MESSAGE,
    GatewayProcess,
    Load,
    LoadResult,
    gateway_yaml,
    publish,
    reconcile,
    wait_stored,
)
from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.registry import discover
from gateway.runtime import Runtime
from simulators.services import InfluxDB1, Mosquitto, free_port

SPECS = discover()
MACHINES = 20


def names() -> tuple[str, str]:
    """A unique database and site id per test."""
    tag = uuid.uuid4().hex[:8]
    return f"d_{tag}", f"s{tag}"


def config(text: str) -> SiteConfig:
    result = check_text(text, "test.yaml", SPECS, {"KARTECH_BENCH_TOKEN": "x" * 20})
    assert result.problems == [], result.problems
    assert result.config is not None
    return result.config


@asynccontextmanager
async def running(cfg: SiteConfig, data_dir: Path) -> AsyncIterator[Runtime]:
    async with runtime.running(Runtime(cfg, SPECS, data_dir=data_dir, serve_api=False)) as rt:
        yield rt


def printers(mosquitto: Mosquitto, influx_url: str, db: str, site: str, data_dir: Path, **kw: object) -> str:
    return gateway_yaml(site=site, broker_port=mosquitto.port, influx_url=influx_url, database=db,
                        data_dir=data_dir, api_port=0, machines=MACHINES, **kw)  # type: ignore[arg-type]


def load(mosquitto: Mosquitto, site: str, **kw: object) -> Load:
    return Load(mosquitto.port, topic=f"bench/{site}", machines=MACHINES, publishers=1, **kw)  # type: ignore[arg-type]


# --- the gateway as a process, killed with SIGKILL ----------------------------------------------------------------
def test_sigkill_while_writing_loses_nothing_committed(tmp_path: Path, mosquitto: Mosquitto,
                                                       influxdb: InfluxDB1) -> None:
    db, site = names()
    slow = {"flush_interval_s": 5.0, "batch_size": 100_000}  # committed readings wait in the outbox, not in InfluxDB
    settings: dict[str, object] = dict(slow)
    gw = GatewayProcess(tmp_path, lambda port: gateway_yaml(
        site=site, broker_port=mosquitto.port, influx_url=influxdb.url, database=db, data_dir=tmp_path / "data",
        api_port=port, machines=MACHINES, **settings))  # type: ignore[arg-type]
    gw.start()
    try:
        traffic = load(mosquitto, site, rate=1500, seconds=4)
        wait_until(lambda: gw.metrics().total("readings_committed_total") >= 1500 * SIGNALS_PER_MESSAGE,
                   "a second of traffic committed", 10)
        m = gw.metrics()
        committed, written = m.total("readings_committed_total"), m.total("readings_written_total")
        gw.kill9()
        assert committed - written >= 1000  # acknowledged to the broker, held only by the outbox on disk
        settings.clear()  # restart with the default prompt flush
        gw.start()
        sent = traffic.wait()
        assert sent.acked == sent.sent
        result, _ = wait_stored(influxdb, db, sent, 30)
        assert (result.lost, result.duplicates, result.mismatched_series) == (0, 0, [])
        assert result.stored == sent.sent
        assert "outbox: resuming with" in gw.log_tail(200_000)
    finally:
        gw.stop()


def test_killed_between_receive_and_commit_gets_the_messages_again(tmp_path: Path, mosquitto: Mosquitto,
                                                                   influxdb: InfluxDB1) -> None:
    db, site = names()
    blocker = tmp_path / "data" / "outbox.sqlite"
    blocker.mkdir(parents=True)  # a directory where the database file should be: not even root can open it
    gw = GatewayProcess(tmp_path, lambda port: gateway_yaml(
        site=site, broker_port=mosquitto.port, influx_url=influxdb.url, database=db, data_dir=tmp_path / "data",
        api_port=port, machines=MACHINES))
    gw.start()
    try:
        sent = publish(mosquitto.port, topic=f"bench/{site}", machines=MACHINES, publishers=1, rate=0, seconds=10,
                       count=200)
        assert sent.acked == 200  # the broker has them; the gateway has not acknowledged them
        wait_until(lambda: gw.metrics().total("readings_received_total") == 200 * SIGNALS_PER_MESSAGE,
                   "all messages received", 10)
        m = gw.metrics()
        assert m.total("readings_committed_total") == 0
        assert m.total("outbox_errors_total") >= 1
        health = gw.health()
        assert health["status"] == "degraded"
        assert health["outbox"]["state"] == "failing"
        assert "cannot open the outbox" in health["outbox"]["last_error"]
        gw.kill9()
        blocker.rmdir()
        gw.start()  # same client id, persistent session: the broker sends them again
        result, _ = wait_stored(influxdb, db, sent, 20)
        assert (result.lost, result.duplicates, result.stored) == (0, 0, 200)
        assert gw.health()["outbox"]["state"] == "ok"
    finally:
        gw.stop()


def test_disk_full_degrades_visibly_and_recovers_when_space_returns(tmp_path: Path, mosquitto: Mosquitto) -> None:
    db, site = names()
    limit = 3 << 20
    gw = GatewayProcess(tmp_path, lambda port: gateway_yaml(
        site=site, broker_port=mosquitto.port, influx_url=f"http://127.0.0.1:{free_port()}", database=db,
        data_dir=tmp_path / "data", api_port=port, machines=MACHINES))
    # a real ENOSPC-like failure without root mounts: files of the gateway may not grow past 3 MB (EFBIG);
    # InfluxDB is unreachable, so the outbox only grows
    gw.preexec = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    gw.start()
    try:
        traffic = load(mosquitto, site, rate=3000, seconds=7)
        wait_until(lambda: gw.health()["outbox"]["state"] == "failing", "the outbox to hit the limit", 15)
        health = gw.health()
        assert health["status"] == "degraded"
        assert "full" in health["outbox"]["last_error"]
        m = gw.metrics()
        assert m.total("outbox_errors_total") >= 1
        assert m.total("readings_committed_total") < m.total("readings_received_total")
        resource.prlimit(gw.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wait_until(lambda: gw.health()["outbox"]["state"] == "ok", "the outbox to recover", 15)
        sent = traffic.wait()
        wait_until(lambda: gw.metrics().total("readings_committed_total") == sent.sent * SIGNALS_PER_MESSAGE,
                   "every message committed", 20)
        assert gw.proc is not None
        assert gw.proc.poll() is None  # never crashed
    finally:
        gw.stop()


# --- in-process gateway -------------------------------------------------------------------------------------------
def poison_site(mosquitto: Mosquitto, influxdb: InfluxDB1, db: str, site: str, data_dir: Path) -> str:
    # bad-01 writes `layer` as a float into the same measurement where the printers write it as an integer:
    # InfluxDB refuses that one line (field type conflict) and takes the rest
    return printers(mosquitto, influxdb.url, db, site, data_dir, flush_interval_s=2.0, batch_size=100_000) + (
        "  - {id: bad-01, name: Bad, kind: printer, driver: mqtt, broker: lab, topics: [{topic: "
        "'bench/{site}/{machine}/report', timestamp: {path: ts, format: unix_ms}, fields: {layer: {type: float}}}]}\n"
    )


def message(machine: str, ts_ms: int, layer: int) -> bytes:
    return json.dumps({"ts": ts_ms, "machine": machine, "nozzle_temp": 210.0, "bed_temp": 60.0, "layer": layer,
                       "state": "printing"}).encode()


async def test_a_poison_line_mid_batch_is_dead_lettered_and_every_good_line_lands(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    db, site = names()
    async with running(config(poison_site(mosquitto, influxdb, db, site, tmp_path)), tmp_path) as rt:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{site}")
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        base = int(time.time() * 1000) - 60_000
        expected = LoadResult()

        def send(machine: str, ts: int, layer: int) -> mqtt.MQTTMessageInfo:
            if machine != "bad-01":
                expected.merge(LoadResult(1, 1, 0, 0, {machine: [1, layer, ts, ts]}))
            return pub.publish(f"bench/{site}/{machine}/report", message(machine, ts, layer), qos=1)

        send("p-000", base, 1).wait_for_publish(5)  # `layer` becomes an integer field
        await until(lambda: rt.metrics.total("readings_written_total") == 4, "the first message written", 10)
        infos = [send(f"p-{i % MACHINES:03d}", base + 1 + i, 100 + i) for i in range(100)]
        infos.append(send("bad-01", base + 500, 7))
        infos += [send(f"p-{i % MACHINES:03d}", base + 1000 + i, 1000 + i) for i in range(100)]
        for info in infos:
            info.wait_for_publish(5)
        await until(lambda: rt.outbox is not None and rt.outbox.queued_readings("influxdb") == 0
                    and rt.metrics.total("readings_committed_total") == 4 + 200 * 4 + 1, "the batch confirmed", 20)
        pub.loop_stop()
        assert rt.outbox is not None
        dead = await rt.outbox.dead_letters("influxdb")
        assert rt.metrics.total("sink_write_requests_total", status="400") >= 1  # it really was one batch
    assert len(dead) == 1
    assert "field type conflict" in dead[0]["reason"]
    assert "machine=bad-01" in dead[0]["line"]
    assert "layer=7.0" in dead[0]["line"]
    assert rt.metrics.value("readings_dead_lettered_total", sink="influxdb") == 1
    result = reconcile(influxdb, db, expected)
    assert (result.stored, result.lost, result.duplicates, result.mismatched_series) == (201, 0, 0, [])


async def test_influxdb_down_then_up_lands_everything_exactly_once(tmp_path: Path, mosquitto: Mosquitto,
                                                                 influxdb: InfluxDB1) -> None:
    db, site = names()
    async with running(config(printers(mosquitto, influxdb.url, db, site, tmp_path)), tmp_path) as rt:
        await asyncio.to_thread(influxdb.stop)
        try:
            sent = await asyncio.to_thread(lambda: load(mosquitto, site, rate=2000, seconds=2).wait())
            readings = sent.sent * SIGNALS_PER_MESSAGE
            await until(lambda: rt.metrics.total("readings_committed_total") == readings, "all committed", 10)
            await until(lambda: rt.health()["sinks"]["influxdb"]["state"] == "failing", "the sink failing", 10)
            h = rt.health()
            assert h["status"] == "degraded"
            assert h["sinks"]["influxdb"]["queued"] > 0
            assert rt.metrics.total("readings_written_total") < readings
        finally:
            await asyncio.to_thread(influxdb.start)
        await until(lambda: rt.metrics.total("readings_written_total") >= readings
                    and rt.health()["sinks"]["influxdb"]["queued"] == 0, "the backlog written, nothing queued", 30)
        assert rt.metrics.total("readings_written_total") == readings  # nothing written twice
        assert rt.health()["status"] == "ok"
    result = reconcile(influxdb, db, sent)
    assert (result.stored, result.lost, result.duplicates, result.mismatched_series) == (sent.sent, 0, 0, [])


async def test_full_outbox_with_backpressure_keeps_data_in_the_broker_and_loses_nothing(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    db, site = names()
    text = printers(mosquitto, influxdb.url, db, site, tmp_path, outbox_max_bytes=1 << 16, queue_size=100)
    async with running(config(text), tmp_path) as rt:
        await asyncio.to_thread(influxdb.stop)
        try:
            traffic = load(mosquitto, site, rate=2000, seconds=2)
            await until(lambda: rt.pipeline is not None and rt.pipeline.state == "backpressure", "back-pressure", 15)
            sent = await asyncio.to_thread(traffic.wait)
            await asyncio.sleep(0.5)
            h = rt.health()
            assert h["status"] == "degraded"
            assert h["outbox"]["state"] == "backpressure"
            committed = rt.metrics.total("readings_committed_total")
            assert committed < sent.sent * SIGNALS_PER_MESSAGE  # the rest is unacknowledged, in the broker
            assert rt.metrics.total("outbox_full_total") >= 1
        finally:
            await asyncio.to_thread(influxdb.start)
        readings = sent.sent * SIGNALS_PER_MESSAGE
        await until(lambda: rt.metrics.total("readings_written_total") >= readings, "everything written", 30)
        assert rt.metrics.value("readings_dropped_total", sink="influxdb") == 0
    result = reconcile(influxdb, db, sent)
    assert (result.stored, result.lost, result.duplicates, result.mismatched_series) == (sent.sent, 0, 0, [])


async def test_full_outbox_with_drop_oldest_drops_and_counts(tmp_path: Path, mosquitto: Mosquitto,
                                                            influxdb: InfluxDB1) -> None:
    db, site = names()
    text = printers(mosquitto, influxdb.url, db, site, tmp_path, outbox_max_bytes=1 << 16, when_full="drop_oldest")
    async with running(config(text), tmp_path) as rt:
        await asyncio.to_thread(influxdb.stop)
        try:
            sent = await asyncio.to_thread(lambda: load(mosquitto, site, rate=2000, seconds=2).wait())
            readings = sent.sent * SIGNALS_PER_MESSAGE
            await until(lambda: rt.metrics.total("readings_committed_total") == readings, "all committed", 10)
            dropped = rt.metrics.value("readings_dropped_total", sink="influxdb")
            assert dropped > readings / 2  # 64 KiB holds a small part of it
            assert f'kartech_readings_dropped_total{{sink="influxdb"}} {dropped:g}' in rt.metrics.render()
        finally:
            await asyncio.to_thread(influxdb.start)
        await until(lambda: rt.metrics.total("readings_written_total") + dropped >= readings, "the rest written", 30)
        assert rt.metrics.total("readings_written_total") + dropped == readings  # every reading accounted for
    stored = reconcile(influxdb, db, sent).stored
    assert 0 < stored < sent.sent
    assert stored * SIGNALS_PER_MESSAGE == readings - dropped


@pytest.fixture(autouse=True)
def _servers_back(influxdb: InfluxDB1) -> None:
    """Tests stop the session's InfluxDB; the fixture starts it again for the next test if one failed midway."""
