"""MqttLab against a real Mosquitto: payloads follow each machine's config, faults arrive, restarts pass."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kit.poll import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.config import MqttMachine
from simulators.dynamics import SignalValue
from simulators.mqtt_lab import OVERSIZED_BYTES, MqttLab, build_models, describe, encode
from simulators.services import LOOPBACK, Mosquitto, ServiceUnavailable

pytestmark = pytest.mark.integration


def machines() -> list[MqttMachine]:
    raw: list[dict[str, Any]] = [
        {
            "id": "furnace-01", "name": "Muffle furnace", "kind": "furnace",
            "topics": [{
                "topic": "lab/{site}/{machine}/telemetry",
                "fields": {
                    "temperature": {"path": "temp.value", "unit": "degC"},
                    "setpoint": {"path": "temp.sp", "unit": "degC"},
                    "heater_pct": {"path": "heater_permille", "scale": 0.1, "unit": "%"},
                    "door_open": {"path": "door", "type": "bool"},
                    "state": {"type": "string"},
                },
                "timestamp": {"path": "ts", "format": "unix_ms"},
            }],
        },
        {
            "id": "pm-01", "name": "Power meter furnace", "kind": "power_meter",
            "topics": [{
                "topic": "lab/{site}/{machine}/power/{signal}", "format": "number",
                "units": {"power_w": "W", "energy_kwh": "kWh"},
            }],
        },
        {
            "id": "fdm-01", "name": "Printer 1", "kind": "printer",
            "topics": [{
                "topic": "lab/{site}/{machine}/report",
                "fields": {
                    "progress_pct": {"path": "print.progress"},
                    "layer": {"path": "print.layer", "type": "int"},
                    "nozzle_temp": {"path": "temps.0"},
                    "bed_temp": {"path": "temps.1"},
                    "state": {"path": "print.state", "type": "string"},
                },
                "timestamp": {"path": "meta.time", "format": "iso8601"},
            }],
        },
        {
            "id": "air-01", "name": "Lab air", "kind": "env_sensor",
            "topics": [{"topic": "lab/{site}/{machine}/co2", "format": "number", "signal": "co2_ppm"}],
        },
    ]
    return [MqttMachine.model_validate({"driver": "mqtt", "broker": "main", **m}) for m in raw]


@pytest.fixture(scope="module")
def lab_broker() -> Iterator[Mosquitto]:
    broker = Mosquitto()
    try:
        broker.start()
    except ServiceUnavailable as err:
        pytest.skip(str(err))
    yield broker
    broker.close()


class Collector:
    """A paho subscriber that re-subscribes after reconnecting and keeps every message it gets."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "test subscriber did not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def of(self, machine_id: str) -> list[tuple[str, bytes]]:
        return [(t, p) for t, p in self.snapshot() if t.split("/")[2] == machine_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def start_lab(port: int, site: str, **kw: Any) -> tuple[MqttLab, Collector]:
    collector = Collector(port, f"lab/{site}/#")
    lab = MqttLab(machines(), site_id=site, host=LOOPBACK, port=port, interval_s=0.1, **kw)
    lab.start()
    assert lab.wait_connected(5)
    return lab, collector


# --- pure encoding (no broker) ---


def test_unknown_kind_is_refused_with_the_kinds_that_exist() -> None:
    m = machines()[0].model_copy(update={"kind": "cnc"})
    with pytest.raises(ValueError, match='no MQTT simulator for kind "cnc"; simulated kinds are furnace'):
        build_models(m, 1)


def test_encode_inverts_scale_and_places_values_at_their_paths() -> None:
    furnace, meter, printer, air = machines()
    values: dict[str, SignalValue] = {"temperature": 512.3, "setpoint": 515.0, "heater_pct": 63.5, "door_open": False,
              "programme": "ramp-1", "state": "running"}
    [(topic, payload)] = encode(furnace, values, site_id="kartech", t_s=1_700_000_000.25)
    assert topic == "lab/kartech/furnace-01/telemetry"
    assert json.loads(payload) == {
        "temp": {"value": 512.3, "sp": 515.0}, "heater_permille": 635.0, "door": False,
        "state": "running", "ts": 1_700_000_000_250,
    }
    msgs = encode(meter, {"power_w": 120.5, "voltage_v": 230.1, "energy_kwh": 12.25}, site_id="k", t_s=0)
    assert msgs == [("lab/k/pm-01/power/power_w", b"120.5"), ("lab/k/pm-01/power/energy_kwh", b"12.25")]
    [(_, report)] = encode(printer, {"progress_pct": 12.5, "layer": 7, "nozzle_temp": 215.1, "bed_temp": 60.0,
                                     "state": "running"}, site_id="k", t_s=0.5)
    assert json.loads(report) == {"print": {"progress": 12.5, "layer": 7, "state": "running"},
                                  "temps": [215.1, 60.0], "meta": {"time": "1970-01-01T00:00:00.500Z"}}
    co2 = encode(air, {"co2_ppm": 815.0, "pm2_5": 4.0}, site_id="k", t_s=0)
    assert co2 == [("lab/k/air-01/co2", b"815.0")]


# --- against Mosquitto ---


def test_payloads_decode_per_config_and_counts_reconcile(lab_broker: Mosquitto, site: str) -> None:
    lab, collector = start_lab(lab_broker.port, site)
    try:
        wait_until(lambda: all(collector.of(m) for m in lab.machines), "every machine to publish")
        time.sleep(0.5)
    finally:
        started = time.monotonic()
        lab.stop()
        assert time.monotonic() - started < 2.0
    try:
        for mid in lab.machines:
            wait_until(lambda mid=mid: len(collector.of(mid)) == lab.published[mid], f"{mid}: received == published")
            assert lab.published[mid] > 0
    finally:
        collector.close()

    now_ms = time.time() * 1000
    for topic, payload in collector.of("furnace-01"):
        assert topic == f"lab/{site}/furnace-01/telemetry"
        obj = json.loads(payload)
        assert set(obj) == {"temp", "heater_permille", "door", "state", "ts"}
        assert 0.0 <= obj["heater_permille"] <= 1000.0
        assert isinstance(obj["door"], bool)
        assert obj["state"] in ("running", "idle")
        assert now_ms - 30_000 < obj["ts"] <= now_ms
    meter_topics = {t for t, _ in collector.of("pm-01")}
    assert meter_topics == {f"lab/{site}/pm-01/power/power_w", f"lab/{site}/pm-01/power/energy_kwh"}
    energy = [float(p) for t, p in collector.of("pm-01") if t.endswith("energy_kwh")]
    assert energy == sorted(energy)
    for _, payload in collector.of("fdm-01"):
        obj = json.loads(payload)
        assert isinstance(obj["print"]["layer"], int)
        assert len(obj["temps"]) == 2
        assert obj["meta"]["time"].endswith("Z")
    assert all(350.0 < float(p) < 3000.0 for _, p in collector.of("air-01"))
    url = f"mqtt://{LOOPBACK}:{lab_broker.port}"
    assert describe(lab)[0] == f"furnace-01 (furnace) -> {url} lab/{site}/furnace-01/telemetry"


def test_garbage_is_mixed_into_the_stream(lab_broker: Mosquitto, site: str) -> None:
    lab, collector = start_lab(lab_broker.port, site)
    try:
        for kind in ("malformed_json", "invalid_utf8", "oversized", "nan"):
            lab.set_garbage("furnace-01", kind)
        lab.set_garbage("pm-01", "text_in_number")
        lab.set_garbage("pm-01", "nan")
        wait_until(lambda: sum(lab.garbage_published.values()) == 6, "six bad messages acknowledged")
        wait_until(lambda: len(collector.of("pm-01")) > 20, "good messages after the bad ones")
    finally:
        lab.stop()
        collector.close()

    def parse(payload: bytes) -> Any:
        try:
            return json.loads(payload.decode("utf-8"), parse_constant=lambda c: c)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return err

    furnace = [p for _, p in collector.of("furnace-01")]
    outcomes = [parse(p) for p in furnace]
    assert sum(isinstance(o, json.JSONDecodeError) for o in outcomes) == 1
    assert sum(isinstance(o, UnicodeDecodeError) for o in outcomes) == 1
    assert sum(len(p) > OVERSIZED_BYTES for p in furnace) == 1
    assert sum(isinstance(o, dict) and o["temp"]["value"] == "NaN" for o in outcomes) == 1
    meter = [p for _, p in collector.of("pm-01")]
    assert meter.count(b"n/a") == 1
    assert meter.count(b"NaN") == 1
    good = [float(p) for p in meter if p not in (b"n/a", b"NaN")]
    assert all(math.isfinite(v) for v in good)


def test_frozen_machine_goes_quiet_and_resumes(lab_broker: Mosquitto, site: str) -> None:
    lab, collector = start_lab(lab_broker.port, site)
    try:
        wait_until(lambda: len(collector.of("furnace-01")) > 2, "furnace data")
        lab.freeze("furnace-01")
        meter_at = len(collector.of("pm-01"))
        # one publishing thread and one client: a meter message published after the freeze arrives after any
        # furnace message published before it
        wait_until(lambda: len(collector.of("pm-01")) >= meter_at + 2, "the meter publishing after the freeze")
        frozen_at = len(collector.of("furnace-01"))
        meter_at = len(collector.of("pm-01"))
        wait_until(lambda: len(collector.of("pm-01")) > meter_at + 5, "five more meter messages")
        assert len(collector.of("furnace-01")) == frozen_at
        lab.resume("furnace-01")
        wait_until(lambda: len(collector.of("furnace-01")) > frozen_at + 3, "furnace to resume")
        with pytest.raises(KeyError, match="no simulated machine 'nope'"):
            lab.freeze("nope")
    finally:
        lab.stop()
        collector.close()


def test_publish_raw_waits_for_the_broker(lab_broker: Mosquitto, site: str) -> None:
    lab, collector = start_lab(lab_broker.port, site)
    try:
        lab.publish_raw(f"lab/{site}/furnace-01/telemetry", b"\x00\x01 not json")
        assert lab.raw_published == 1
        wait_until(lambda: (f"lab/{site}/furnace-01/telemetry", b"\x00\x01 not json") in collector.snapshot(),
                   "raw message")
    finally:
        lab.stop()
        collector.close()


def test_lab_keeps_publishing_after_a_broker_restart(site: str) -> None:
    try:
        broker = Mosquitto()
        broker.start()
    except ServiceUnavailable as err:
        pytest.skip(str(err))
    try:
        lab, collector = start_lab(broker.port, site)
        try:
            wait_until(lambda: lab.published["furnace-01"] > 3, "data before the restart")
            broker.restart(down_s=1.0)
            before = lab.published["furnace-01"]
            seen = len(collector.of("furnace-01"))
            assert lab.wait_connected(10)
            wait_until(lambda: lab.published["furnace-01"] > before + 5, "publishing again", 15)
            wait_until(lambda: len(collector.of("furnace-01")) > seen + 5, "delivery again", 15)
        finally:
            started = time.monotonic()
            lab.stop()
            assert time.monotonic() - started < 2.0
            collector.close()
    finally:
        broker.close()


def test_stop_is_prompt_when_no_broker_is_listening(site: str) -> None:
    from simulators.services import free_port

    lab = MqttLab(machines(), site_id=site, host=LOOPBACK, port=free_port(), interval_s=0.1)
    lab.start()
    time.sleep(1.5)
    started = time.monotonic()
    lab.stop()
    assert time.monotonic() - started < 2.0
    assert not lab.wait_connected(0)
    assert sum(lab.published.values()) == 0
