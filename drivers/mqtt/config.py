"""Configuration of machines read over MQTT, and of the brokers (the site file's `mqtt:` section)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import SLUG, MachineBase, Strict
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


class TlsOptions(Strict):
    ca_file: str | None = Field(default=None, description="CA bundle that signed the broker certificate.")
    cert_file: str | None = Field(default=None, description="Client certificate (for brokers that require one).")
    key_file: str | None = Field(default=None, description="Client private key.")
    insecure_skip_verify: bool = Field(
        default=False, description="Accept any broker certificate. Only for a lab bench, never in production."
    )


class MqttBroker(Strict):
    id: str = Field(pattern=SLUG, description="Name machines use to refer to this broker.")
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=0, le=65535, description="Broker port (8883 is usual with TLS).")
    embedded: bool = Field(
        default=False,
        description="Start a broker inside the gateway on host:port (demo and small benches). Port 0 picks one.",
    )
    protocol: Literal["mqtt5", "mqtt311"] = Field(
        default="mqtt5", description="MQTT protocol version (the embedded broker speaks mqtt311 only)."
    )
    client_id: str | None = Field(
        default=None, description="Fixed client id (needed for a persistent session); default kartech-<site>-<id>."
    )
    username: str | None = Field(default=None, description="User name, if the broker requires one. On an embedded "
                                 "broker: the gateway's own (drawn at every start when unset).")
    password: str | None = Field(default=None, description="Password: write it as ${ENV_VAR}, never literally.")
    tls: TlsOptions | None = Field(default=None, description="Use TLS with these options.")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive interval.")
    session: Literal["persistent", "clean"] = Field(
        default="persistent",
        description="persistent: the broker keeps our subscriptions and queues messages while we are away.",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=0, description="MQTT 5 session expiry; how long the broker keeps queued data."
    )
    subscriptions: list[str] | None = Field(
        default=None,
        description="Topic filters to subscribe to (e.g. lab/# or $share/gw/lab/#). "
        "Default: derived from the machines' topics.",
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=64, description="Larger messages are counted as oversized and skipped."
    )

    def driver_client_id(self, site_id: str) -> str:
        """The client id of the gateway's MQTT driver on this broker."""
        return self.client_id or f"kartech-{site_id}-{self.id}"

    @model_validator(mode="before")
    @classmethod
    def _embedded_protocol(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("embedded") is True and "protocol" not in data:
            return {**data, "protocol": "mqtt311"}
        return data

    @model_validator(mode="after")
    def _embedded_is_311(self) -> MqttBroker:
        if self.embedded and self.protocol != "mqtt311":
            raise ValueError("the embedded broker speaks MQTT 3.1.1 only; set protocol: mqtt311")
        return self


class MqttSection(Strict):
    brokers: list[MqttBroker] = Field(default_factory=list, description="Brokers the gateway connects to.")
