"""Configuration of machines read over MQTT."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import MachineBase, Strict
from gateway.signals import SignalSettings
from gateway.units import Unit

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
KNOWN_PLACEHOLDERS = ("site", "machine", "signal")


class FieldMap(SignalSettings):
    """Where one signal is in a JSON payload; how its value is read is shared by every driver (SignalSettings)."""

    path: str | None = Field(
        default=None, description="Dotted path in the JSON payload (e.g. temp.value or axes.0.load); "
        "default: the signal name."
    )


class TimestampMap(Strict):
    path: str = Field(default="ts", description="Dotted path of the source timestamp in the JSON payload.")
    format: Literal["unix_s", "unix_ms", "unix_us", "unix_ns", "iso8601"] = Field(
        default="unix_ms", description="How the timestamp is written."
    )


class TopicMap(Strict):
    topic: str = Field(
        description="Topic template with named placeholders {site}, {machine} and {signal}, "
        "e.g. lab/{site}/{machine}/telemetry or lab/{site}/{machine}/power/{signal}."
    )
    format: Literal["json", "number"] = Field(
        default="json",
        description="json: a JSON object mapped by `fields`; number: a plain number, the signal named by "
        "{signal} in the topic (or by `signal`).",
    )
    fields: dict[str, FieldMap] = Field(
        default_factory=dict, description="json format: signal name -> where and how to read it."
    )
    signal: str | None = Field(default=None, description="number format without {signal}: the signal name.")
    units: dict[str, Unit] = Field(
        default_factory=dict, description="number format: unit per signal name (e.g. power_w: W)."
    )
    timestamp: TimestampMap | Literal["gateway"] = Field(
        default="gateway",
        description="gateway: stamp on receipt; or where the source timestamp is in the JSON payload.",
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or v == "/":
            raise ValueError("is empty; use e.g. lab/{site}/{machine}/telemetry")
        if "#" in v or "+" in v:
            raise ValueError("must not contain MQTT wildcards; use placeholders such as {signal}")
        for name in PLACEHOLDER.findall(v):
            if name not in KNOWN_PLACEHOLDERS:
                raise ValueError(
                    f"has unknown placeholder {{{name}}}; use {{site}}, {{machine}} or {{signal}}"
                )
        for level in v.split("/"):
            if PLACEHOLDER.search(level) and not PLACEHOLDER.fullmatch(level):
                raise ValueError(f"level {level!r} mixes a placeholder with text; a placeholder fills a whole level")
        return v

    @model_validator(mode="after")
    def _shape(self) -> TopicMap:
        has_signal = "{signal}" in self.topic
        if self.format == "json":
            if not self.fields:
                raise ValueError("format json needs `fields` (signal name -> path, unit)")
            if has_signal:
                raise ValueError("format json cannot use {signal}; name signals under `fields`")
        elif not has_signal and not self.signal:
            raise ValueError("format number needs {signal} in the topic or a `signal` name")
        if self.format == "number" and self.timestamp != "gateway":
            raise ValueError("format number has no payload timestamp; use timestamp: gateway")
        return self


class MqttMachine(MachineBase):
    """A machine that publishes its data to an MQTT broker."""

    driver: Literal["mqtt"] = Field(description="mqtt")
    broker: str = Field(description="Id of a broker under mqtt.brokers.")
    topics: list[TopicMap] = Field(min_length=1, description="Topics this machine publishes and how to read them.")
