"""Sparkplug B topics and Tahu payloads: parsing, typed metric values, bdSeq, the rebirth request."""

from __future__ import annotations

import pytest

from drivers.sparkplug.payload import (
    Topic,
    Unsupported,
    bdseq,
    decode,
    iso_utc,
    metric_value,
    rebirth_request,
)
from drivers.sparkplug.sparkplug_b_pb2 import DataType, Payload


def metric(datatype: int, **value: object) -> Payload.Metric:
    m = Payload.Metric(name="m", datatype=datatype)
    for k, v in value.items():
        setattr(m, k, v)
    return m


@pytest.mark.parametrize(("topic", "want"), [
    ("spBv1.0/G1/NBIRTH/node-a", ("NBIRTH", "G1", "node-a", None)),
    ("spBv1.0/G1/DDATA/node-a/press 1", ("DDATA", "G1", "node-a", "press 1")),
    ("spBv1.0/G1/NCMD/node-a", ("NCMD", "G1", "node-a", None)),
])
def test_topics_of_nodes_and_devices(topic: str, want: tuple[str, str, str, str | None]) -> None:
    t = Topic.parse(topic)
    assert t is not None
    assert (t.verb, t.group, t.edge_node, t.device) == want


def test_state_topic() -> None:
    t = Topic.parse("spBv1.0/STATE/kartech-gw")
    assert t is not None
    assert (t.verb, t.host_id) == ("STATE", "kartech-gw")


@pytest.mark.parametrize("topic", [
    "spBv1.0/G1/NDATA",  # no edge node
    "spBv1.0/G1/DDATA/node-a",  # a device verb without a device
    "spBv1.0/G1/NDATA/node-a/dev",  # a node verb with a device
    "spBv1.0/G1/NOPE/node-a",
    "spAv1.0/G1/NDATA/node-a",
    "spBv1.0//NDATA/node-a",
    "spBv1.0/STATE/a/b",
])
def test_wrong_topic_shapes(topic: str) -> None:
    assert Topic.parse(topic) is None


@pytest.mark.parametrize(("datatype", "field", "raw", "want"), [
    (DataType.Int8, "int_value", 0xFB, -5),  # Tahu: -5 + 2**8
    (DataType.Int8, "int_value", 0xFFFFFFFB, -5),  # sign-extended to 32 bits (other encoders)
    (DataType.Int16, "int_value", 2**16 - 300, -300),
    (DataType.Int32, "int_value", 2**32 - 1, -1),
    (DataType.Int32, "int_value", 2**31 - 1, 2**31 - 1),
    (DataType.Int64, "long_value", 2**64 - 2, -2),
    (DataType.UInt8, "int_value", 250, 250),
    (DataType.UInt32, "int_value", 2**32 - 1, 2**32 - 1),
    (DataType.UInt64, "long_value", 2**64 - 1, 2**64 - 1),
    (DataType.Boolean, "boolean_value", True, True),
    (DataType.String, "string_value", "O1001_BRACKET.NC", "O1001_BRACKET.NC"),
    (DataType.Text, "string_value", "line one\nline two", "line one\nline two"),
    (DataType.UUID, "string_value", "b5f0c1c2-8c1e-4a36-9d7e-0f5a2c9e1d11", "b5f0c1c2-8c1e-4a36-9d7e-0f5a2c9e1d11"),
])
def test_values_keep_their_types(datatype: int, field: str, raw: object, want: object) -> None:
    v = metric_value(metric(datatype, **{field: raw}), datatype)
    assert v.raw == want
    assert type(v.raw) is type(want)


def test_float_and_double_are_floats() -> None:
    assert metric_value(metric(DataType.Float, float_value=21.5), DataType.Float).raw == 21.5
    v = metric_value(metric(DataType.Double, double_value=1e-3), DataType.Double)
    assert v.raw == 1e-3
    assert isinstance(v.raw, float)


def test_datetime_is_iso_text_and_keeps_its_milliseconds() -> None:
    v = metric_value(metric(DataType.DateTime, long_value=1_764_514_963_123), DataType.DateTime)
    assert v.raw == "2025-11-30T15:02:43.123Z"
    assert v.ms == 1_764_514_963_123


def test_datetime_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        iso_utc(2**63)


def test_is_null_has_no_value() -> None:
    v = metric_value(metric(DataType.Double, is_null=True), DataType.Double)
    assert v.raw is None


def test_value_in_the_wrong_field_is_refused() -> None:
    with pytest.raises(ValueError, match="string_value, expected float_value or double_value"):
        metric_value(metric(DataType.Double, string_value="12"), DataType.Double)
    with pytest.raises(ValueError, match="no field"):
        metric_value(metric(DataType.Int32), DataType.Int32)


@pytest.mark.parametrize("datatype", [DataType.DataSet, DataType.Bytes, DataType.Template, DataType.Int32Array, 99])
def test_types_without_a_scalar_value_are_unsupported(datatype: int) -> None:
    with pytest.raises(Unsupported, match="is not read by the gateway"):
        metric_value(metric(DataType.Bytes, bytes_value=b"x"), datatype)


def test_decode_refuses_what_is_not_a_payload() -> None:
    assert decode(b"\xff\xff\xff\xff") is None
    assert decode(b'{"temperature": 21.5}') is None
    p = Payload(seq=3, timestamp=1)
    got = decode(p.SerializeToString())
    assert got is not None
    assert got.seq == 3


def test_bdseq_is_found_by_name() -> None:
    p = Payload(metrics=[Payload.Metric(name="Other", datatype=DataType.Int64, long_value=9),
                         Payload.Metric(name="bdSeq", datatype=DataType.Int64, long_value=4)])
    assert bdseq(p) == 4
    assert bdseq(Payload()) is None


def test_rebirth_request_is_the_node_control_metric_true() -> None:
    p = decode(rebirth_request(1_000))
    assert p is not None
    assert [(m.name, m.datatype, m.boolean_value) for m in p.metrics] == [
        ("Node Control/Rebirth", DataType.Boolean, True)]
