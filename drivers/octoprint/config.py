"""Configuration of a printer behind OctoPrint, read through OctoPrint's REST API (/api/printer, /api/job)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from drivers.http_poll import base_url
from gateway.config.models import MachineBase


class OctoPrintMachine(MachineBase):
    """A printer connected to an OctoPrint server (OctoPi on a Raspberry Pi next to an Ender-3, a Prusa MK3S, ...)."""

    driver: Literal["octoprint"] = Field(description="octoprint")
    url: str = Field(
        description="Base address of OctoPrint, e.g. http://octopi.local or http://192.168.10.40; with a path when "
        "it is served under one (http://host/octoprint)."
    )
    api_key: str = Field(
        min_length=1,
        description="An application key or user API key of an OctoPrint user with the STATUS permission (OctoPrint: "
        "Settings > Application Keys): write it as ${ENV_VAR}, never literally.",
    )
    tool: str = Field(default="tool0", description="Which tool's temperature is nozzle_temp: tool0, tool1, ...")
    poll_interval_s: float = Field(
        default=2.0, ge=0.5, le=300, description="How often /api/printer and /api/job are read."
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=60,
        description="Timeout of one HTTP request (connect and answer); an unanswered OctoPrint counts as unreachable.",
    )
    reconnect_max_s: float = Field(
        default=5.0, ge=0.5, le=600,
        description="An unreachable OctoPrint is tried again after growing, jittered delays up to this long.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return base_url(v, "http://octopi.local", path=True)

    @field_validator("tool")
    @classmethod
    def _tool(cls, v: str) -> str:
        if not re.fullmatch(r"tool\d+", v):
            raise ValueError("is not one of OctoPrint's tool names; use tool0 for the first extruder, tool1, ...")
        return v
