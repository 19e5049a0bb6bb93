"""OPC UA DataValue -> Reading: status code to quality, timestamps, types, arrays, enums and value maps. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from drivers.opcua.config import SignalConfig, Timestamp
from gateway.reading import Quality, Reading, Value
from gateway.signals import NULL_VALUE, WRONG_TYPE, BadInput, BadValue, SignalType, convert

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH

# base data types of namespace 0 -> the gateway's value type
BOOL_TYPES = {1}
INT_TYPES = {2, 3, 4, 5, 6, 7, 8, 9, 27, 28}
FLOAT_TYPES = {10, 11, 26}
STRING_TYPES = {12, 13, 14, 17, 20, 21}  # String, DateTime, Guid, NodeId, QualifiedName, LocalizedText
ENUMERATION = 29
KNOWN_BASE_TYPES = BOOL_TYPES | INT_TYPES | FLOAT_TYPES | STRING_TYPES | {ENUMERATION}

# StatusCode bits (OPC 10000-4 7.39): InfoType DataValue (bits 10-11 = 01) with the Overflow bit (7)
_INFO_TYPE_MASK = 0x0C00
_INFO_TYPE_DATAVALUE = 0x0400
_OVERFLOW = 0x0080

ARRAY_VALUE = BadValue("array_value")
ARRAY_INDEX_OUT_OF_RANGE = BadValue("array_index_out_of_range")


def type_for_base(base: int) -> SignalType | None:
    """The gateway type for a namespace-0 base data type id, or None when it cannot be read as one value."""
    if base in BOOL_TYPES:
        return "bool"
    if base in INT_TYPES:
        return "int"
    if base in FLOAT_TYPES:
        return "float"
    if base in STRING_TYPES or base == ENUMERATION:
        return "string"
    return None


def to_ns(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if dt.year < 1971:  # "no time": the minimum DateTime most servers send when they do not know
        return None
    return (dt - _EPOCH) // _MICRO * 1000



def quality_of(status: ua.StatusCode | None) -> Quality:
    if status is None:
        return Quality.GOOD
    code = status.value
    severity = code & 0xC0000000
    if severity == 0:
        return Quality.GOOD
    if severity == 0x40000000:
        return Quality.UNCERTAIN
    return Quality.BAD


def overflowed(status: ua.StatusCode | None) -> bool:
    return status is not None and (status.value & _INFO_TYPE_MASK) == _INFO_TYPE_DATAVALUE \
        and bool(status.value & _OVERFLOW)


def status_name(status: ua.StatusCode | None) -> str:
    if status is None:
        return "Good"
    try:
        return str(status.name)
    except Exception:  # unknown vendor code
        return f"0x{status.value:08X}"


@dataclass(slots=True)
class SignalPlan:
    """One configured signal as resolved on the current connection."""

    machine: str
    name: str
    cfg: SignalConfig
    timestamp: Timestamp
    type: str | None = None  # float | int | bool | string, fixed at the first connect
    enum_names: Mapping[int, str] = field(default_factory=dict)
    node_text: str = ""


def _as_text(raw: Any, plan: SignalPlan) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, ua.LocalizedText):
        return str(raw.Text or "")
    if isinstance(raw, ua.QualifiedName):
        return str(raw.Name or "")
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return plan.enum_names.get(raw, str(raw))
    if isinstance(raw, datetime):
        ns = to_ns(raw)
        return None if ns is None else raw.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(raw, float):
        return repr(raw)
    if isinstance(raw, ua.NodeId):
        return str(raw.to_string())
    return None


def convert_value(raw: Any, plan: SignalPlan) -> Value | BadValue:
    """The value of a good or uncertain raw Variant value, or why it cannot be read (the rules: gateway/signals.py).

    What is OPC UA's own happens here: an array element is picked by `index`; an enumeration, a LocalizedText, a
    QualifiedName, a DateTime or a NodeId becomes text for a string signal (and an enumeration is known by its
    name to `map`)."""
    cfg = plan.cfg
    if isinstance(raw, list):
        if cfg.index is None:
            return ARRAY_VALUE
        if cfg.index >= len(raw):
            return ARRAY_INDEX_OUT_OF_RANGE
        raw = raw[cfg.index]
    kind = plan.type or "float"
    if raw is None:
        return NULL_VALUE
    if kind == "string":
        text = _as_text(raw, plan)
        return WRONG_TYPE if text is None else convert(text, cfg, kind)
    if cfg.map and type(raw) is int and plan.enum_names.get(raw) in cfg.map:
        raw = plan.enum_names[raw]
    return convert(raw, cfg, kind)


def to_reading(plan: SignalPlan, dv: ua.DataValue, receive_ns: int, bad: BadInput) -> Reading | None:
    """The reading for one DataValue, or None if it is unusable (then counted through `bad`).

    A Bad status yields a bad-quality reading whose value is None: a bad value is never written as a number.
    """
    status = dv.StatusCode
    if overflowed(status):
        bad("server_queue_overflow", plan.machine,
            f"{plan.name}: the server's queue for {plan.node_text} overflowed; raise queue_size or lower the "
            "sampling rate")
    quality = quality_of(status)
    ts = receive_ns
    if plan.timestamp == "source":
        ts = to_ns(dv.SourceTimestamp) or to_ns(dv.ServerTimestamp) or receive_ns
    elif plan.timestamp == "server":
        ts = to_ns(dv.ServerTimestamp) or receive_ns
    unit = plan.cfg.unit
    if quality is Quality.BAD:
        return Reading(plan.machine, plan.name, None, unit, Quality.BAD, ts, receive_ns)
    raw = dv.Value.Value if dv.Value is not None else None
    value = convert_value(raw, plan)
    if isinstance(value, BadValue):
        reason = value.reason
        if reason == "non_finite":
            bad(reason, plan.machine, f"{plan.name}: {raw!r} from {plan.node_text}")
            return Reading(plan.machine, plan.name, None, unit, Quality.BAD, ts, receive_ns)
        detail = f"{plan.name}: {str(raw)[:60]!r} from {plan.node_text}"
        if reason == "array_value" and isinstance(raw, list):
            detail += f" is an array of {len(raw)} values; set index: N to read one element"
        bad(reason, plan.machine, detail)
        return None
    return Reading(plan.machine, plan.name, value, unit, quality, ts, receive_ns)
