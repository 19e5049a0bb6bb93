"""Pydantic models of the site YAML. Field descriptions are the single source for docs, schema and errors."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SLUG_HELP = "lower-case letters, digits, '-' and '_', starting with a letter or digit (e.g. fdm-03)"


class Strict(BaseModel):
    """Every config model forbids unknown keys, so a typo is reported instead of silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSection(Strict):
    id: str = Field(pattern=SLUG, description="Short id of the site, used as the `site` tag and in MQTT topics.")
    name: str = Field(description="Human name of the site, shown on the web page.")
    timezone: str = Field(
        default="Asia/Almaty", description="IANA time zone for shifts and billing periods (data is stored in UTC)."
    )
    currency: str = Field(default="KZT", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of rates and bills.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError("is not an IANA time zone; use e.g. Asia/Almaty or Asia/Qostanay") from err
        return v


Precision = Literal["ns", "us", "ms", "s"]


class _InfluxCommon(Strict):
    url: str = Field(description="Base URL of the InfluxDB server, e.g. http://influxdb:8086.")
    precision: Precision = Field(default="ns", description="Timestamp precision written to InfluxDB.")
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="Lines per write request (at most).")
    flush_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="A partial batch is written after this many seconds."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="HTTP timeout of one write request.")
    gzip: bool = Field(default=True, description="Compress write bodies with gzip (every InfluxDB accepts it).")
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate for https URLs.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("is not an http(s) URL; use e.g. http://127.0.0.1:8086")
        return v.rstrip("/")


class InfluxV1(_InfluxCommon):
    """InfluxDB 1.x: line protocol to /write with database and retention policy."""

    version: Literal[1] = Field(description="1 for InfluxDB 1.x (/write).")
    database: str = Field(description="Database to write to; created at start-up when the user may do so.")
    retention_policy: str | None = Field(default=None, description="Retention policy; the default one if unset.")
    username: str | None = Field(default=None, description="User name, if the server has auth enabled.")
    password: str | None = Field(default=None, description="Password: write it as ${ENV_VAR}, never literally.")


class InfluxV2(_InfluxCommon):
    """InfluxDB 2.x or 3.x: line protocol to /api/v2/write with org, bucket and token."""

    version: Literal[2, 3] = Field(description="2 for InfluxDB 2.x, 3 for InfluxDB 3.x (/api/v2/write).")
    org: str = Field(description="Organisation name (2.x); ignored by 3.x but required by the API.")
    bucket: str = Field(description="Bucket (2.x) or database (3.x) to write to.")
    token: str = Field(description="API token with write access: write it as ${ENV_VAR}, never literally.")


class LocalHistory(Strict):
    enabled: bool = Field(default=True, description="Keep an on-disk history (SQLite) for the web page and API.")
    retention_days: float = Field(default=14, gt=0, description="History older than this is deleted.")


class OutboxSettings(Strict):
    """The on-disk queue in front of every sink (see README: Lose nothing)."""

    max_bytes: int = Field(
        default=1 << 30, ge=1 << 16, description="Size limit of the queued data on disk (default 1 GiB)."
    )
    when_full: Literal["backpressure", "drop_oldest"] = Field(
        default="backpressure",
        description="backpressure: stop taking (and acknowledging) data until sinks catch up, so sources such as "
        "an MQTT broker keep it; drop_oldest: delete the oldest queued data to make room (counted and alerted).",
    )
    durability: Literal["full", "normal"] = Field(
        default="full",
        description="full: every commit is synced to disk and survives power loss; normal: survives a crash of the "
        "gateway, but the last commits before a power loss may be lost (faster on slow disks).",
    )
    commit_interval_s: float = Field(
        default=0.02, ge=0, le=5,
        description="Readings arriving within this interval are committed together (group commit); sources are "
        "acknowledged after their commit.",
    )


class Storage(Strict):
    data_dir: str = Field(default="data", description="Directory for the local history, queues and state.")
    queue_size: int = Field(
        default=100_000, ge=100, description="Readings held in memory between stages before sources are slowed."
    )
    local_history: LocalHistory = Field(default_factory=LocalHistory)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    influxdb: Annotated[InfluxV1 | InfluxV2, Field(discriminator="version")] | None = Field(
        default=None, description="InfluxDB to write telemetry to; leave out to keep only the local history."
    )


class Timestamps(Strict):
    """What to do with a source timestamp the gateway's clock cannot believe (a device clock that is wrong)."""

    max_ahead_s: float = Field(default=300.0, gt=0, description="A source time more than this far ahead of the "
                               "gateway's clock is not believed.")
    max_age_s: float = Field(default=7 * 86_400.0, gt=0, description="A source time older than this when it "
                             "arrives is not believed (a device clock reset to 1970 or 2000, say).")
    policy: Literal["receive_time", "reject"] = Field(
        default="receive_time", description="receive_time: keep the value, stamped with when the gateway received "
        "it; reject: drop the reading. Either way it is counted in bad_input_total by reason.")


class Health(Strict):
    """When the gateway says it is degraded because of itself."""

    loop_lag_threshold_s: float = Field(default=0.25, gt=0, description="Event-loop lag above this (something "
                                        "held the loop instead of awaiting) counts as a problem.")
    loop_lag_for_s: float = Field(default=10.0, ge=0, description="How long the lag must last before "
                                  "health says degraded, with the reason.")


class ApiToken(Strict):
    name: str = Field(description="Who uses this token (shown in logs, never the token itself).")
    token: str = Field(min_length=16, description="The bearer token: write it as ${ENV_VAR}.")
    role: Literal["admin", "technician", "viewer", "partner"] = Field(
        default="viewer", description="What the token may do; a partner token reads only its own partner's usage "
        "and statements.")
    partner: str | None = Field(default=None, description="The partner (under billing.partners) a partner token "
                                "belongs to; needed with role partner, refused with any other role.")

    @model_validator(mode="after")
    def _partner(self) -> ApiToken:
        if self.role == "partner" and self.partner is None:
            raise ValueError("a token with role partner needs the partner it belongs to, e.g. partner: acme")
        if self.role != "partner" and self.partner is not None:
            raise ValueError(f"partner is only for tokens with role partner (this one has role {self.role})")
        return self


class ApiSection(Strict):
    host: str = Field(default="127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    tokens: list[ApiToken] = Field(default_factory=list, description="Bearer tokens accepted by the API.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30,
                                description="Larger request bodies are refused (413) without being read.")


class MachineBase(Strict):
    """Keys every machine has, whatever its driver."""

    id: str = Field(pattern=SLUG, description=f"Unique machine id: {SLUG_HELP}.")
    name: str = Field(description="Human name shown to technicians.")
    kind: str = Field(
        pattern=SLUG,
        description="Machine kind (printer, cnc, laser, furnace, analyser, chamber, power_meter, balance, ...); "
        "also the InfluxDB measurement.",
    )
    driver: str = Field(description="Which driver reads this machine.")
    lab: str | None = Field(default=None, pattern=SLUG, description="Lab or shop the machine stands in.")
    expected_interval_s: float = Field(
        default=5.0, gt=0, description="How often the machine normally reports; 3x this without data = offline."
    )
