"""Configuration of machines read as Sparkplug B edge nodes or devices (Sparkplug 3.0) on a broker under mqtt.brokers.

The gateway is a Sparkplug Host Application: one connection per broker, serving every machine on it. A machine is
an edge node (`group` + `edge_node`) or one device of an edge node (`device` too); its signals are metric names.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from gateway.config.models import MachineBase
from gateway.signals import SignalKind, SignalSettings

# Sparkplug 3.0, topics: ids are UTF-8 text without the MQTT separators and wildcards
_FORBIDDEN = ("/", "+", "#")
ID_HELP = "Sparkplug ids are text without '/', '+' or '#'"
SPARKPLUG_TYPE_HELP = (
    "Value type: auto (default) takes it from the metric's Sparkplug datatype in the birth certificate: Int8..Int64 "
    "and UInt8..UInt64 -> int, Float and Double -> float, Boolean -> bool, String, Text and UUID -> string, DateTime "
    "-> string (ISO 8601, UTC). Or float, int, bool or string to convert (a DateTime read as int is milliseconds "
    "since the epoch). A value that does not fit is counted as bad input, never guessed."
)


def _sparkplug_id(v: str) -> str:
    if not v or any(c in v for c in _FORBIDDEN):
        raise ValueError(f"is not a Sparkplug id; {ID_HELP}")
    return v


class MetricMap(SignalSettings):
    """Where one signal comes from: a metric of the machine's birth certificate, read like any signal."""

    auto_type: ClassVar[bool] = True
    metric: str | None = Field(
        default=None,
        description="Metric name as the edge node declares it in its NBIRTH/DBIRTH (e.g. Spindle/Speed); default: "
        "the signal name.",
    )
    type: SignalKind = Field(default="auto", description=SPARKPLUG_TYPE_HELP)


class SparkplugMachine(MachineBase):
    """A Sparkplug B edge node, or one device of an edge node, publishing to a broker under mqtt.brokers."""

    driver: Literal["sparkplug"] = Field(description="sparkplug")
    broker: str = Field(description="Id of a broker under mqtt.brokers (its TLS and credentials are used).")
    group: str = Field(description="Sparkplug group id (the second topic level, spBv1.0/<group>/...).")
    edge_node: str = Field(description="Sparkplug edge node id.")
    device: str | None = Field(
        default=None, description="Sparkplug device id of the edge node; leave out to read the edge node's own "
        "metrics (NBIRTH/NDATA)."
    )
    host_id: str | None = Field(
        default=None,
        description="The gateway's Sparkplug host id: its retained STATE message is spBv1.0/STATE/<host_id>. The "
        "same for every machine on one broker; default kartech-<site>. Must be unique among the host applications "
        "on the broker; name it in an edge node's Primary Host setting to make the node wait for the gateway.",
    )
    signals: dict[str, MetricMap] = Field(
        min_length=1, description="Signal name -> the metric it reads and how (type, unit, scale, map)."
    )
    reorder_timeout_s: float = Field(
        default=2.0, ge=0, le=60,
        description="Sparkplug 'Reorder Timeout' of the edge node: how long a message that came before the ones it "
        "follows (seq out of order, or before the NBIRTH) waits for them before the gateway asks for a rebirth. "
        "Clustered brokers (EMQX, HiveMQ) can reorder messages across topics; 0: ask at once.",
    )

    @field_validator("group", "edge_node", "device", "host_id")
    @classmethod
    def _ids(cls, v: str | None) -> str | None:
        return v if v is None else _sparkplug_id(v)

    def metric_of(self, signal: str) -> str:
        return self.signals[signal].metric or signal

    def effective_host_id(self, site_id: str) -> str:
        return self.host_id or f"kartech-{site_id}"
