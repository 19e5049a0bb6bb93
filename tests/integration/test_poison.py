"""One message can never stop intake: poison payloads through a real Mosquitto into a real InfluxDB and the local
history, while good messages keep arriving and landing; a restart brings none of the poison back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from kit.poll import until
from kit.runtime import running
from test_mqtt_to_influx import count, publisher

from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.registry import discover
from gateway.runtime import Runtime
from gateway.sinks.history import LocalHistory
from simulators.services import InfluxDB1, Mosquitto

SPECS = discover()
YEAR_2100_MS = 4_102_444_800_000


def site(mosquitto: Mosquitto, influx: InfluxDB1, db: str, site_id: str, data_dir: Path) -> SiteConfig:
    text = f"""
site: {{id: {site_id}, name: Test}}
storage:
  data_dir: {data_dir}
  influxdb: {{version: 1, url: "{influx.url}", database: {db}, batch_size: 500, flush_interval_s: 0.1}}
mqtt:
  brokers:
    - {{id: lab, host: 127.0.0.1, port: {mosquitto.port}, client_id: gw-{site_id}}}
machines:
  - id: furnace-01
    name: Furnace
    kind: furnace
    driver: mqtt
    broker: lab
    topics:
      - topic: lab/{{site}}/{{machine}}/telemetry
        timestamp: {{path: ts, format: unix_ms}}
        fields:
          temperature: {{path: temp, unit: degC}}
          note: {{type: string}}
"""
    result = check_text(text, "test.yaml", SPECS, {})
    assert result.problems == [], result.problems
    assert result.config is not None
    return result.config


def poison(now_ms: int) -> list[tuple[str, bytes]]:
    return [
        ("undecodable", b"[" * 100_000),  # RecursionError inside json, in paho's thread
        ("surrogate", b'{"ts": %d, "temp": 1.5, "note": "\\ud800"}' % now_ms),  # valid JSON, not storable text
        ("invalid_utf8", b"\xff\xfe\x00\x01binary"),
        ("timestamp_ahead", json.dumps({"ts": YEAR_2100_MS, "temp": 2100.0}).encode()),
    ]


async def test_poison_messages_are_counted_and_good_messages_keep_landing(
        mosquitto: Mosquitto, influxdb: InfluxDB1, tmp_path: Path) -> None:
    db, sid = f"t_{uuid.uuid4().hex[:10]}", f"s{uuid.uuid4().hex[:6]}"
    cfg = site(mosquitto, influxdb, db, sid, tmp_path)
    topic = f"lab/{sid}/furnace-01/telemetry"
    pub = publisher(mosquitto.port)
    good = 0
    now_ms = int(time.time() * 1000)

    def send_good(n: int) -> None:
        nonlocal good
        for _ in range(n):
            body = {"ts": now_ms + good, "temp": 100.0 + good, "note": "ok"}
            pub.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
            good += 1

    try:
        async with running(Runtime(cfg, SPECS, serve_api=False)) as rt:
            ctx = rt.contexts[0]
            send_good(5)
            for _, payload in poison(now_ms + 1000):
                pub.publish(topic, payload, qos=1).wait_for_publish(5)
                send_good(5)
            # every good message is stored by both sinks; the poison is counted, not fatal
            await until(lambda: rt.metrics.value("readings_written_total", sink="influxdb") >= 2 * good + 2,
                        timeout_s=20.0)
            await until(lambda: rt.metrics.value("readings_written_total", sink="history") >= 2 * good + 2,
                        timeout_s=20.0)
            reasons = {lbl["reason"]: v for lbl, v in rt.metrics.series("bad_input_total") if v}
            assert reasons == {"undecodable": 1, "invalid_utf8": 1, "timestamp_ahead": 1}
            assert ctx.is_connected
            assert ctx.restarts == 0
            # the year-2100 reading never freezes the live value: the latest received reading is shown
            live = rt.stage.machine("furnace-01")["signals"]["temperature"]
            assert live["value"] == 100.0 + good - 1
            # the surrogate text went to each sink's dead letters with the reason; the 1.5 beside it landed
            assert rt.outbox is not None
            await until(lambda: rt.metrics.value("readings_dead_lettered_total", sink="history") == 1, timeout_s=20.0)
            await until(lambda: rt.metrics.value("readings_dead_lettered_total", sink="influxdb") == 1, timeout_s=20.0)
            letters = await rt.outbox.dead_letters()
            assert sorted(d["sink"] for d in letters) == ["history", "influxdb"]
            assert all("surrogate" in d["reason"] for d in letters), letters
            assert all(w["state"] == "ok" for w in rt.health()["sinks"].values())
            assert rt.health()["status"] == "ok"
        assert count(influxdb, db, 'SELECT count(temperature) FROM "furnace"') == good + 2
        assert count(influxdb, db, 'SELECT count(note) FROM "furnace"') == good

        # a restart: the broker redelivers nothing of the poison (it was acknowledged), the outbox holds none
        async with running(Runtime(cfg, SPECS, serve_api=False)) as rt2:
            before = good
            send_good(3)
            await until(lambda: rt2.metrics.value("readings_written_total", sink="history") >= 2 * (good - before),
                        timeout_s=20.0)
            assert sum(v for _, v in rt2.metrics.series("bad_input_total")) == 0
            assert rt2.outbox is not None
            assert len(await rt2.outbox.dead_letters()) == 2  # the old ones, kept for inspection, nothing new
            assert rt2.health()["status"] == "ok"
    finally:
        pub.loop_stop()
    hist = LocalHistory(tmp_path / "history.sqlite", {}, rt.metrics, retention_days=1)
    await hist.open()
    try:
        rows = await hist.query_history("furnace-01", "temperature", 0, 2**62, 10_000)
    finally:
        await hist.close()
    assert len(rows) == good + 2


@pytest.mark.parametrize("policy", ["receive_time", "reject"])
async def test_timestamp_policy_through_the_driver(mosquitto: Mosquitto, influxdb: InfluxDB1, tmp_path: Path,
                                                   policy: str) -> None:
    db, sid = f"t_{uuid.uuid4().hex[:10]}", f"s{uuid.uuid4().hex[:6]}"
    cfg = site(mosquitto, influxdb, db, sid, tmp_path)
    cfg = cfg.model_copy(update={"timestamps": cfg.timestamps.model_copy(update={"policy": policy})})
    topic = f"lab/{sid}/furnace-01/telemetry"
    pub = publisher(mosquitto.port)
    try:
        async with running(Runtime(cfg, SPECS, serve_api=False)) as rt:
            sent_at = time.time_ns()
            for ts in (YEAR_2100_MS, 946_684_800_000):  # ahead, and a clock reset to 2000-01-01
                pub.publish(topic, json.dumps({"ts": ts, "temp": 5.0}), qos=1).wait_for_publish(5)
            pub.publish(topic, json.dumps({"ts": int(time.time() * 1000), "temp": 7.0}), qos=1).wait_for_publish(5)
            await until(lambda: rt.stage.machine("furnace-01")["signals"].get("temperature", {}).get("value") == 7.0,
                        timeout_s=20.0)
            # the live value is there as soon as the reading is taken in, before it is committed: wait until
            # InfluxDB has confirmed every reading the policy keeps
            kept = 1 if policy == "reject" else 3
            await until(lambda: rt.metrics.value("readings_written_total", sink="influxdb") >= kept, timeout_s=20.0)
            reasons = {lbl["reason"]: v for lbl, v in rt.metrics.series("bad_input_total") if v}
            assert reasons == {"timestamp_ahead": 1, "timestamp_too_old": 1}
    finally:
        pub.loop_stop()
    rows = influxdb.query('SELECT temperature FROM "furnace" ORDER BY time', db=db)[0]["values"]
    if policy == "reject":
        assert [v for _, v in rows] == [7.0]
    else:  # kept, stamped with when the gateway received them
        assert sorted(v for _, v in rows) == [5.0, 5.0, 7.0]
        assert all(sent_at - 60e9 < t < time.time_ns() for t, _ in rows)
