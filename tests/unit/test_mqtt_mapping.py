"""Topic routing and payload decoding of the MQTT driver (pure, no broker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from drivers.mqtt.config import MqttMachine
from drivers.mqtt.mapping import Decoder, Router
from gateway.reading import Quality, Reading

RECV = 1_800_000_000_000_000_000


def machine(mid: str, topics: list[dict[str, Any]]) -> MqttMachine:
    return MqttMachine.model_validate(
        {"id": mid, "name": mid, "kind": "printer", "driver": "mqtt", "broker": "lab", "topics": topics})


PRINTER = machine("fdm-01", [{
    "topic": "lab/{site}/{machine}/report",
    "timestamp": {"path": "ts", "format": "unix_ms"},
    "fields": {
        "nozzle_temp": {"path": "temps.nozzle", "unit": "degC"},
        "heater": {"path": "heater.out", "unit": "%", "scale": 0.1},
        "offset_t": {"path": "t", "unit": "degC", "scale": 2, "offset": -10},
        "layer": {"path": "job.layer", "type": "int"},
        "fan": {"path": "fans.0", "unit": "%"},
        "file": {"path": "job.file", "type": "string"},
        "door": {"type": "bool"},
    },
}])
METER = machine("pm-01", [{"topic": "lab/{site}/{machine}/power/{signal}", "format": "number",
                           "units": {"power_w": "W"}}])


class Bad:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, reason: str, machine: str | None, detail: str) -> None:
        self.seen.append((reason, machine))


@pytest.fixture
def dec() -> tuple[Decoder, Bad]:
    bad = Bad()
    return Decoder(Router([PRINTER, METER], "kartech"), 1024, bad), bad


def by_signal(readings: list[Reading]) -> dict[str, Reading]:
    return {r.signal: r for r in readings}


def test_json_fields_nested_paths_scale_offset_types(dec: tuple[Decoder, Bad]) -> None:
    d, bad = dec
    payload = {"ts": 1_700_000_000_123, "temps": {"nozzle": 215.5}, "heater": {"out": 455}, "t": 20,
               "job": {"layer": 12, "file": "bracket.gcode"}, "fans": [80, 20], "door": 0}
    got = by_signal(d.decode("lab/kartech/fdm-01/report", json.dumps(payload).encode(), RECV))
    assert bad.seen == []
    assert got["nozzle_temp"] == Reading("fdm-01", "nozzle_temp", 215.5, "degC", Quality.GOOD,
                                         1_700_000_000_123_000_000, RECV)
    assert got["heater"].value == pytest.approx(45.5)
    assert got["offset_t"].value == 30.0
    assert got["layer"].value == 12
    assert isinstance(got["layer"].value, int)
    assert got["fan"].value == 80.0
    assert got["file"].value == "bracket.gcode"
    assert got["door"].value is False


def test_plain_number_topics_name_the_signal(dec: tuple[Decoder, Bad]) -> None:
    d, bad = dec
    [r] = d.decode("lab/kartech/pm-01/power/power_w", b" 1234.5\n", RECV)
    assert (r.machine, r.signal, r.value, r.unit, r.source_ns) == ("pm-01", "power_w", 1234.5, "W", RECV)
    [r] = d.decode("lab/kartech/pm-01/power/voltage_v", b"229.8", RECV)
    assert (r.signal, r.unit) == ("voltage_v", None)
    assert bad.seen == []


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("lab/kartech/fdm-01/report", b'{"temps": {"nozzle": 2', "malformed_json"),
    ("lab/kartech/fdm-01/report", b"[1, 2]", "malformed_json"),
    ("lab/kartech/fdm-01/report", b'{"temps": {"nozzle": "hot"}}', "not_a_number"),
    ("lab/kartech/fdm-01/report", b'{"temps": {"nozzle": NaN}}', "non_finite"),
    ("lab/kartech/fdm-01/report", b'{"temps": {"nozzle": Infinity}}', "non_finite"),
    ("lab/kartech/fdm-01/report", b'{"job": {"layer": 1.5}}', "not_an_integer"),
    ("lab/kartech/fdm-01/report", b'{"door": "maybe"}', "not_a_bool"),
    ("lab/kartech/fdm-01/report", b'{"ts": "yesterday"}', "bad_timestamp"),
    ("lab/kartech/fdm-01/report", b"\xff\xfe{}", "invalid_utf8"),
    ("lab/kartech/fdm-01/report", b"{" + b" " * 2000 + b"}", "oversized"),
    ("lab/kartech/pm-01/power/power_w", b"lots", "not_a_number"),
    ("lab/kartech/pm-01/power/power_w", b"nan", "non_finite"),
    ("lab/kartech/cnc-09/report", b"{}", "unknown_topic"),
])
def test_bad_input_is_counted_by_reason(dec: tuple[Decoder, Bad], topic: str, payload: bytes, reason: str) -> None:
    d, bad = dec
    if payload.startswith(b'{"') and reason != "bad_timestamp":
        payload = b'{"ts": 1700000000000, ' + payload[1:]
    d.decode(topic, payload, RECV)
    assert [r for r, _ in bad.seen] == [reason]


def test_one_bad_field_does_not_hold_back_the_good_ones(dec: tuple[Decoder, Bad]) -> None:
    d, bad = dec
    payload = b'{"temps": {"nozzle": NaN}, "heater": {"out": 100}, "job": {"layer": "x", "file": "a.gcode"}}'
    got = by_signal(d.decode("lab/kartech/fdm-01/report", payload, RECV))
    assert sorted(got) == ["file", "heater"]
    assert sorted(r for r, _ in bad.seen) == ["missing_timestamp", "non_finite", "not_a_number"]
    assert got["heater"].source_ns == RECV  # no timestamp in the payload: receive time


def test_iso_timestamps() -> None:
    m = machine("f-1", [{"topic": "t/{machine}", "timestamp": {"path": "at", "format": "iso8601"},
                         "fields": {"x": {}}}])
    d = Decoder(Router([m], "s"), 1024, Bad())
    [r] = d.decode("t/f-1", b'{"at": "2026-11-26T10:00:00.250Z", "x": 1}', RECV)
    assert r.source_ns == 1_795_687_200_250_000_000


def test_subscription_filters_cover_every_route() -> None:
    assert Router([PRINTER, METER], "kartech").filters() == [
        "lab/kartech/fdm-01/report", "lab/kartech/pm-01/power/+"]
