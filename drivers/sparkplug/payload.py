"""Sparkplug B topics and payloads: parsing the topic, decoding the Tahu protobuf, reading a metric's typed value.

The payload schema is Eclipse Tahu's `sparkplug_b.proto` (next to this file), compiled into `sparkplug_b_pb2.py`
with the protobuf package's own compiler; see README.md, "Regenerating the protobuf module". No I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from google.protobuf.message import DecodeError

from drivers.sparkplug.sparkplug_b_pb2 import DataType, Payload

NAMESPACE = "spBv1.0"
NODE_VERBS = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_VERBS = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"

Kind = Literal["float", "int", "bool", "string"]
Raw = float | int | bool | str

# Sparkplug datatype -> (the value field it travels in, bits of a signed integer or 0, the natural signal type)
_INT_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED = frozenset({DataType.UInt8, DataType.UInt16, DataType.UInt32, DataType.UInt64})
_TEXT = frozenset({DataType.String, DataType.Text, DataType.UUID})
NATURAL_KIND: dict[int, Kind] = {
    **dict.fromkeys(_INT_BITS, "int"), **dict.fromkeys(_UNSIGNED, "int"),
    DataType.Float: "float", DataType.Double: "float", DataType.Boolean: "bool",
    **dict.fromkeys(_TEXT, "string"), DataType.DateTime: "string",
}


class Topic:
    """A parsed spBv1.0 topic: spBv1.0/<group>/<verb>/<edge node>[/<device>], or spBv1.0/STATE/<host id>."""

    __slots__ = ("device", "edge_node", "group", "host_id", "verb")

    def __init__(self, verb: str, group: str = "", edge_node: str = "", device: str | None = None,
                 host_id: str = "") -> None:
        self.verb = verb
        self.group = group
        self.edge_node = edge_node
        self.device = device
        self.host_id = host_id

    @classmethod
    def parse(cls, topic: str) -> Topic | None:
        """The topic's parts, or None when it is not a Sparkplug B topic of a known shape."""
        levels = topic.split("/")
        if len(levels) < 3 or levels[0] != NAMESPACE or not all(levels):
            return None
        if levels[1] == "STATE":
            return cls("STATE", host_id=levels[2]) if len(levels) == 3 else None
        verb = levels[2]
        if verb in NODE_VERBS and len(levels) == 4:
            return cls(verb, levels[1], levels[3])
        if verb in DEVICE_VERBS and len(levels) == 5:
            return cls(verb, levels[1], levels[3], levels[4])
        return None


def node_topic(verb: str, group: str, edge_node: str) -> str:
    return f"{NAMESPACE}/{group}/{verb}/{edge_node}"


def device_topic(verb: str, group: str, edge_node: str, device: str) -> str:
    return f"{NAMESPACE}/{group}/{verb}/{edge_node}/{device}"


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def decode(data: bytes | bytearray) -> Payload | None:
    """The Sparkplug B payload in `data`, or None when it is not one (not protobuf, or not this schema)."""
    payload = Payload()
    try:
        payload.ParseFromString(bytes(data))
    except (DecodeError, RuntimeWarning, ValueError):
        return None
    return payload


@dataclass(frozen=True, slots=True)
class MetricValue:
    """A metric's value as the gateway reads it: `raw` in its natural Python type, or None for an is_null metric;
    `ms` is a DateTime's milliseconds since the epoch (for an int signal)."""

    raw: Raw | None
    datatype: int
    ms: int | None = None


class Unsupported(ValueError):
    """A metric whose datatype the gateway does not read (arrays, DataSet, Template, Bytes, File, ...)."""


def metric_value(m: Payload.Metric, datatype: int) -> MetricValue:
    """The value of metric `m` of Sparkplug `datatype` (taken from the birth when the data message omits it).

    Signed integers travel as two's complement in the unsigned int_value/long_value fields (Tahu adds 2**bits to a
    negative value): they are read back with their sign. Raises `Unsupported` for types without a scalar value and
    `ValueError` when the value field does not match the datatype."""
    if m.is_null:
        return MetricValue(None, datatype)
    field = m.WhichOneof("value")
    bits = _INT_BITS.get(datatype)  # type: ignore[call-overload]
    if bits is not None:
        x = _field(m, field, ("int_value",) if bits < 64 else ("long_value", "int_value"))
        assert isinstance(x, int)
        x &= (1 << bits) - 1
        return MetricValue(x - (1 << bits) if x >> (bits - 1) else x, datatype)
    if datatype in _UNSIGNED:
        wide = datatype == DataType.UInt64
        x = _field(m, field, ("long_value", "int_value") if wide else ("int_value", "long_value"))
        assert isinstance(x, int)
        return MetricValue(x, datatype)
    if datatype in (DataType.Float, DataType.Double):
        return MetricValue(float(_field(m, field, ("float_value", "double_value"))), datatype)
    if datatype == DataType.Boolean:
        return MetricValue(bool(_field(m, field, ("boolean_value",))), datatype)
    if datatype in _TEXT:
        return MetricValue(str(_field(m, field, ("string_value",))), datatype)
    if datatype == DataType.DateTime:
        ms = _field(m, field, ("long_value",))
        assert isinstance(ms, int)
        return MetricValue(iso_utc(ms), datatype, ms)
    name = DataType.Name(datatype) if datatype in DataType.values() else str(datatype)
    raise Unsupported(f"datatype {name} is not read by the gateway")


def _field(m: Payload.Metric, field: str | None, allowed: tuple[str, ...]) -> float | int | bool | str:
    if field not in allowed:
        raise ValueError(f"value in {field or 'no field'}, expected {' or '.join(allowed)}")
    value: float | int | bool | str = getattr(m, field)
    return value


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 text in UTC, e.g. 2026-11-30T15:02:43.123Z."""
    try:
        t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    except OverflowError as err:
        raise ValueError(f"DateTime {ms} ms is out of range") from err
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bdseq(payload: Payload) -> int | None:
    """The bdSeq metric of an NBIRTH or NDEATH (Int64, by name: an NDEATH carries no alias)."""
    for m in payload.metrics:
        if m.name == BDSEQ_METRIC and m.WhichOneof("value") in ("long_value", "int_value"):
            value: int = getattr(m, m.WhichOneof("value") or "long_value")
            return value
    return None


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload asking an edge node for a rebirth: metric 'Node Control/Rebirth' = true (Boolean)."""
    p = Payload(timestamp=timestamp_ms)
    m = p.metrics.add()
    m.name = REBIRTH_METRIC
    m.timestamp = timestamp_ms
    m.datatype = DataType.Boolean
    m.boolean_value = True
    return p.SerializeToString()
