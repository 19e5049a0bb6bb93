"""Configuration of a Bambu Lab printer read over its LAN MQTT interface (X1, P1, A1 series)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import MachineBase, Strict

SERIAL = r"^[0-9A-Z]{8,20}$"
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class PrinterTls(Strict):
    """How the printer's certificate is checked: against the CA that signed it, or pinned by its fingerprint."""

    ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA that signed the printer's certificate (Bambu Lab's printer CA for a real "
        "printer). The certificate must also name the printer's serial (its CN), which is checked.",
    )
    fingerprint_sha256: str | None = Field(
        default=None,
        description="SHA-256 of the printer's certificate (64 hex digits, colons allowed), e.g. from "
        "`openssl s_client -connect PRINTER:8883 </dev/null | openssl x509 -noout -fingerprint -sha256`. Only "
        "this certificate is accepted; renew the pin when the printer gets a new certificate.",
    )

    @field_validator("fingerprint_sha256")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is None:
            return None
        hexed = v.replace(":", "").strip().lower()
        if not FINGERPRINT.fullmatch(hexed):
            raise ValueError("is not a SHA-256 fingerprint; write 64 hex digits (colons allowed), e.g. "
                             "AB:CD:...:EF as openssl prints it")
        return hexed

    @model_validator(mode="after")
    def _one(self) -> PrinterTls:
        if (self.ca_file is None) == (self.fingerprint_sha256 is None):
            raise ValueError("needs exactly one of ca_file (the CA that signed the printer's certificate) or "
                             "fingerprint_sha256 (the printer's own certificate, pinned)")
        return self


class BambuMachine(MachineBase):
    """A Bambu Lab printer in LAN mode: the printer's own MQTT broker over TLS, user bblp, the LAN access code."""

    driver: Literal["bambu"] = Field(description="bambu")
    host: str = Field(min_length=1, description="The printer's address on the LAN (IP or host name).")
    port: int = Field(default=8883, ge=1, le=65535, description="The printer's MQTT port (8883 on every model).")
    serial: str = Field(
        pattern=SERIAL,
        description="The printer's serial number (Settings > Device on the printer screen, or Bambu Studio), e.g. "
        "00M09A350100123; used in the topics device/<serial>/report and as the name its certificate carries.",
    )
    access_code: str = Field(
        min_length=1, repr=False,
        description="The printer's LAN access code (Settings > Network / LAN Only on the printer screen), the MQTT "
        "password of user bblp: write it as ${ENV_VAR}, never literally.",
    )
    tls: PrinterTls = Field(description="How the printer's certificate is verified (it is never ignored).")
    pushall_interval_s: float = Field(
        default=300.0, ge=10.0, le=86400.0,
        description="How often a full report (pushall) is requested besides the one at every connect. P1 and A1 "
        "printers slow down when asked more often than every 5 minutes; their changes arrive as they happen.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=600, description="MQTT keep-alive interval.")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120, description="TCP, TLS and MQTT connect, at most.")
    expected_interval_s: float = Field(
        default=5.0, gt=0,
        description="How often the printer normally reports (about every 1-2 s while it is on); 3x this without "
        "data = offline.",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if "://" in v or "/" in v:
            raise ValueError("is an address, not a URL; write the printer's IP or host name, e.g. 192.168.1.40")
        return v
