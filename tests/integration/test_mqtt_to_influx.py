"""End to end: real Mosquitto -> MQTT driver -> pipeline -> real InfluxDB 1.x."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AbstractAsyncContextManager

import paho.mqtt.client as mqtt
from kit.poll import until
from kit.runtime import running
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.registry import discover
from gateway.runtime import Runtime
from simulators.services import InfluxDB1, Mosquitto

SPECS = discover()


def site(mosquitto: Mosquitto, influx: InfluxDB1, db: str, site_id: str) -> SiteConfig:
    text = f"""
site: {{id: {site_id}, name: Test}}
storage:
  local_history: {{enabled: false}}
  queue_size: 1000
  influxdb: {{version: 1, url: "{influx.url}", database: {db}, batch_size: 500, flush_interval_s: 0.2}}
mqtt:
  brokers:
    - {{id: lab, host: 127.0.0.1, port: {mosquitto.port}, client_id: gw-{site_id}}}
machines:
  - id: furnace-01
    name: Furnace
    kind: furnace
    lab: materials
    driver: mqtt
    broker: lab
    topics:
      - topic: lab/{{site}}/{{machine}}/telemetry
        timestamp: {{path: ts, format: unix_ms}}
        fields:
          temperature: {{path: temp.pv, unit: degC}}
          door_open: {{type: bool}}
          state: {{type: string}}
  - id: pm-01
    name: Power meter
    kind: power_meter
    driver: mqtt
    broker: lab
    topics:
      - {{topic: "lab/{{site}}/{{machine}}/power/{{signal}}", format: number, units: {{power_w: W}}}}
"""
    result = check_text(text, "test.yaml", SPECS, {})
    assert result.problems == [], result.problems
    assert result.config is not None
    return result.config


def gateway(cfg: SiteConfig) -> AbstractAsyncContextManager[Runtime]:
    return running(Runtime(cfg, SPECS, serve_api=False))


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def count(influx: InfluxDB1, db: str, q: str) -> int:
    series = influx.query(q, db=db)
    return int(series[0]["values"][0][1]) if series else 0


async def test_messages_land_with_tags_fields_and_source_timestamps(mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    db, sid = f"t_{uuid.uuid4().hex[:10]}", f"s{uuid.uuid4().hex[:6]}"
    async with gateway(site(mosquitto, influxdb, db, sid)) as rt:
        pub = publisher(mosquitto.port)
        ts_ms = int(time.time() * 1000) - 5000
        for i in range(10):
            body = {"ts": ts_ms + i, "temp": {"pv": 800.0 + i}, "door_open": i == 3, "state": "running"}
            pub.publish(f"lab/{sid}/furnace-01/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
        pub.publish(f"lab/{sid}/pm-01/power/power_w", b"1500.5", qos=1).wait_for_publish(5)
        await until(lambda: rt.metrics.total("readings_written_total") >= 31, timeout_s=20.0)
        pub.loop_stop()
    rows = influxdb.query('SELECT * FROM "furnace" ORDER BY time', db=db)[0]
    cols = rows["columns"]
    first = dict(zip(cols, rows["values"][0], strict=True))
    assert len(rows["values"]) == 10
    assert first == {"time": ts_ms * 1_000_000, "machine": "furnace-01", "site": sid, "lab": "materials",
                     "temperature": 800.0, "door_open": False, "state": "running"}
    assert [v[cols.index("door_open")] for v in rows["values"]].count(True) == 1
    power = influxdb.query('SELECT power_w, machine FROM "power_meter"', db=db)[0]
    assert power["values"][0][1:] == [1500.5, "pm-01"]
    assert "lab" not in power["columns"]  # no lab configured: no empty tag


async def test_bad_input_is_counted_and_good_readings_still_land(mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    db, sid = f"t_{uuid.uuid4().hex[:10]}", f"s{uuid.uuid4().hex[:6]}"
    async with gateway(site(mosquitto, influxdb, db, sid)) as rt:
        pub = publisher(mosquitto.port)
        topic = f"lab/{sid}/furnace-01/telemetry"
        now = int(time.time() * 1000)
        bad = [
            (topic, b'{"ts": 1, "temp": '),                                   # malformed JSON
            (topic, json.dumps({"ts": now, "temp": {"pv": "hot"}}).encode()),  # text where a number is mapped
            (topic, b'{"ts": %d, "temp": {"pv": NaN}, "state": "idle"}' % (now + 1)),  # NaN next to a good field
            (topic, b"\xff\xfe\xfa"),                                           # invalid UTF-8
            (topic, b"{" + b" " * 300_000 + b"}"),                              # oversized
            (f"lab/{sid}/pm-01/power/power_w", b"Infinity"),
        ]
        for i, (t, p) in enumerate(bad):
            pub.publish(t, p, qos=1).wait_for_publish(5)
            good = {"ts": now + 10 + i, "temp": {"pv": 100.0 + i}}
            pub.publish(topic, json.dumps(good), qos=1).wait_for_publish(5)
        await until(lambda: rt.metrics.total("readings_written_total") >= 7, timeout_s=20.0)
        m = rt.metrics
        reasons = {lbl["reason"]: v for lbl, v in m.series("bad_input_total")}
        assert reasons == {"malformed_json": 1, "not_a_number": 1, "non_finite": 2, "invalid_utf8": 1,
                           "oversized": 1}
        assert rt.contexts[0].is_connected
        assert "kartech_bad_input_total{driver=\"mqtt:lab\",reason=\"oversized\"} 1" in m.render()
        pub.loop_stop()
    assert count(influxdb, db, 'SELECT count(temperature) FROM "furnace"') == 6
    assert count(influxdb, db, 'SELECT count(state) FROM "furnace"') == 1


async def test_broker_restart_mid_stream_is_survived(mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    db, sid = f"t_{uuid.uuid4().hex[:10]}", f"s{uuid.uuid4().hex[:6]}"
    async with gateway(site(mosquitto, influxdb, db, sid)) as rt:
        topic = f"lab/{sid}/furnace-01/telemetry"
        base = int(time.time() * 1000)

        def send(pub: mqtt.Client, start: int, n: int) -> None:
            for i in range(start, start + n):
                pub.publish(topic, json.dumps({"ts": base + i, "temp": {"pv": float(i)}}), qos=1).wait_for_publish(5)

        pub = publisher(mosquitto.port)
        send(pub, 0, 50)
        await until(lambda: rt.metrics.total("readings_written_total") >= 50, timeout_s=20.0)
        pub.disconnect()
        pub.loop_stop()
        await asyncio.to_thread(mosquitto.restart)
        await until(lambda: not rt.contexts[0].is_connected or rt.metrics.total("driver_reconnects_total") > 0,
                    timeout_s=20.0)
        # the gateway reconnects and re-subscribes by itself
        await until(lambda: rt.contexts[0].is_connected and rt.metrics.total("driver_reconnects_total") >= 1,
                    timeout_s=30)
        pub = publisher(mosquitto.port)
        send(pub, 50, 50)
        await until(lambda: rt.metrics.total("readings_written_total") >= 100, timeout_s=20.0)
        pub.disconnect()
        pub.loop_stop()
    assert count(influxdb, db, 'SELECT count(temperature) FROM "furnace"') == 100
