"""Configuration of a Prusa printer read through PrusaLink's HTTP API (v1: /api/v1/status, /api/v1/job)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.http_poll import base_url
from gateway.config.models import MachineBase


class PrusaLinkMachine(MachineBase):
    """A Prusa printer with PrusaLink (MK4, MK3.9, XL, MINI, CORE One by their own firmware; MK3S with PrusaLink on
    a Raspberry Pi)."""

    driver: Literal["prusalink"] = Field(description="prusalink")
    url: str = Field(description="Base address of the printer's PrusaLink, e.g. http://192.168.10.31 (the printer "
                     "shows it under Settings > Network); https only where a proxy in front of it terminates TLS.")
    auth: Literal["digest", "api_key", "none"] = Field(
        default="digest",
        description="digest: HTTP Digest with username and password (PrusaLink's default on every current "
        "firmware); api_key: the older X-Api-Key header (firmware whose PrusaLink settings show "
        "an API key); none: send no credentials (only for a test bench without authentication).",
    )
    username: str = Field(default="maker", min_length=1, description="Digest user: maker on Prusa's own firmware "
                          "(it cannot be changed there); the one you chose on PrusaLink for a Raspberry Pi.")
    password: str | None = Field(default=None, description="Digest password, shown on the printer under Settings > "
                                 "Network > PrusaLink: write it as ${ENV_VAR}, never literally.")
    api_key: str | None = Field(default=None, description="auth api_key: the API key shown on the printer: write it "
                                "as ${ENV_VAR}, never literally.")
    poll_interval_s: float = Field(default=2.0, ge=0.5, le=300, description="How often /api/v1/status is read "
                                   "(/api/v1/job only when the job changes).")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="Timeout of one HTTP request (connect and "
                             "answer); an unanswered printer counts as unreachable.")
    reconnect_max_s: float = Field(default=5.0, ge=0.5, le=600, description="An unreachable printer is tried "
                                   "again after growing, jittered delays up to this long.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return base_url(v, "http://192.168.10.31", path=False)

    @model_validator(mode="after")
    def _credentials(self) -> PrusaLinkMachine:
        if self.auth == "digest" and not self.password:
            raise ValueError("auth digest needs password: ${ENV_VAR} (the printer shows it under Settings > "
                             "Network > PrusaLink)")
        if self.auth == "api_key" and not self.api_key:
            raise ValueError("auth api_key needs api_key: ${ENV_VAR} (the key the printer shows)")
        if self.auth != "api_key" and self.api_key is not None:
            raise ValueError(f"api_key is for auth api_key (this machine has auth {self.auth})")
        if self.auth != "digest" and self.password is not None:
            raise ValueError(f"password is for auth digest (this machine has auth {self.auth})")
        return self
