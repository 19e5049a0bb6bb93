"""DataValue -> Reading of the OPC UA driver: quality, bad values, timestamps, enums, arrays (pure, no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from drivers.opcua.config import SignalConfig
from drivers.opcua.nodes import format_node, parse_node
from drivers.opcua.values import SignalPlan, to_reading
from gateway.reading import Quality

RECV = 1_800_000_000_000_000_000
SRC = datetime(2026, 11, 26, 9, 0, 0, 123456, tzinfo=UTC)
SRC_NS = int(SRC.replace(microsecond=0).timestamp()) * 1_000_000_000 + 123_456_000


def plan(kind: str | None = "float", **cfg: Any) -> SignalPlan:
    return SignalPlan("cnc-01", "sig", SignalConfig.model_validate({"node": "i=1", **cfg}), "source", kind)


def dv(value: Any, status: int = 0, vtype: ua.VariantType | None = None, **kw: Any) -> ua.DataValue:
    variant = ua.Variant(value, vtype) if vtype is not None else ua.Variant(value)
    return ua.DataValue(variant, StatusCode=ua.StatusCode(status), **kw)


class Bad:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str]] = []

    def __call__(self, reason: str, machine: str | None, detail: str) -> None:
        self.calls.append((reason, machine, detail))


def test_good_value_keeps_the_source_timestamp_and_scaling() -> None:
    r = to_reading(plan(unit="rpm", scale=2.0, offset=1.0), dv(10.0, SourceTimestamp=SRC), RECV, Bad())
    assert r is not None
    assert (r.value, r.unit, r.quality, r.source_ns, r.receive_ns) == (21.0, "rpm", Quality.GOOD, SRC_NS, RECV)


def test_bad_status_is_a_bad_reading_without_a_number() -> None:
    bad = Bad()
    r = to_reading(plan(), dv(812.5, ua.StatusCodes.BadSensorFailure, SourceTimestamp=SRC), RECV, bad)
    assert r is not None
    assert r.quality is Quality.BAD
    assert r.value is None
    assert bad.calls == []


def test_uncertain_status_keeps_the_value() -> None:
    r = to_reading(plan(), dv(5.0, ua.StatusCodes.UncertainLastUsableValue), RECV, Bad())
    assert r is not None
    assert (r.value, r.quality) == (5.0, Quality.UNCERTAIN)


def test_server_queue_overflow_is_counted_and_the_value_kept() -> None:
    bad = Bad()
    r = to_reading(plan(), dv(1.0, 0x0480), RECV, bad)  # Good + InfoType DataValue + Overflow
    assert r is not None
    assert r.value == 1.0
    assert [c[0] for c in bad.calls] == ["server_queue_overflow"]


def test_timestamp_modes_and_fallbacks() -> None:
    server = datetime(2026, 11, 26, 9, 0, 1, tzinfo=UTC)
    p = plan()
    assert to_reading(p, dv(1.0, ServerTimestamp=server), RECV, Bad()).source_ns == SRC_NS + 876_544_000  # type: ignore[union-attr]
    p.timestamp = "gateway"
    assert to_reading(p, dv(1.0, SourceTimestamp=SRC), RECV, Bad()).source_ns == RECV  # type: ignore[union-attr]
    p.timestamp = "source"
    assert to_reading(p, dv(1.0), RECV, Bad()).source_ns == RECV  # type: ignore[union-attr]


def test_enum_is_named_then_mapped_to_a_state() -> None:
    p = plan("string", map={"Executing": "running", "NotExecuting": "idle"})
    p.enum_names = {0: "NotAvailable", 1: "OutOfService", 2: "NotExecuting", 3: "Executing"}
    assert to_reading(p, dv(3, vtype=ua.VariantType.Int32), RECV, Bad()).value == "running"  # type: ignore[union-attr]
    assert to_reading(p, dv(1, vtype=ua.VariantType.Int32), RECV, Bad()).value == "OutOfService"  # type: ignore[union-attr]


def test_localized_text_becomes_its_text() -> None:
    r = to_reading(plan("string"), dv(ua.LocalizedText("Executing", "en")), RECV, Bad())
    assert r is not None
    assert r.value == "Executing"


def test_array_needs_an_index() -> None:
    bad = Bad()
    assert to_reading(plan(), dv([1.0, 2.0, 3.0]), RECV, bad) is None
    assert bad.calls[0][0] == "array_value"
    assert "is an array of 3 values; set index: N" in bad.calls[0][2]
    r = to_reading(plan(index=1), dv([1.0, 2.0, 3.0]), RECV, Bad())
    assert r is not None
    assert r.value == 2.0


def test_nan_is_bad_never_a_number() -> None:
    bad = Bad()
    r = to_reading(plan(), dv(float("nan")), RECV, bad)
    assert r is not None
    assert (r.value, r.quality) == (None, Quality.BAD)
    assert bad.calls[0][0] == "non_finite"


def test_wrong_type_is_counted() -> None:
    bad = Bad()
    assert to_reading(plan("float"), dv("hot"), RECV, bad) is None
    assert bad.calls[0][0] == "not_a_number"


def test_node_ids_resolve_the_namespace_uri_each_time() -> None:
    ref = parse_node("nsu=urn:kartech:sim:cnc;s=cnc-01.Spindle.Speed")
    assert ref.resolve(["http://opcfoundation.org/UA/", "urn:a", "urn:kartech:sim:cnc"]).NamespaceIndex == 2
    assert ref.resolve(["http://opcfoundation.org/UA/", "urn:kartech:sim:cnc"]).NamespaceIndex == 1
    default = parse_node("s=Speed", "urn:kartech:sim:cnc").resolve(["x", "urn:kartech:sim:cnc"])
    assert (default.Identifier, default.NamespaceIndex) == ("Speed", 1)
    assert parse_node("i=2258").resolve(["x"]) == ua.NodeId(2258, 0)
    assert format_node(ua.NodeId("a.b", 1), ["x", "urn:m"]) == "nsu=urn:m;s=a.b"
    assert format_node(ua.NodeId(2258, 0), ["x"]) == "i=2258"
