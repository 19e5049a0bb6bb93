"""Configuration of Klipper printers read through Moonraker: one WebSocket (JSON-RPC 2.0) per printer."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from gateway.config.models import SLUG, MachineBase

DEFAULT_PORT = 7125
_HOST = re.compile(r"^[A-Za-z0-9._-]+$|^\[[0-9A-Fa-f:.]+\]$")


class MoonrakerMachine(MachineBase):
    """A Klipper printer (Voron, RatRig, Sovol, Creality K1 with Moonraker, ...) read through its Moonraker API."""

    driver: Literal["moonraker"] = Field(description="moonraker: a Klipper printer read through Moonraker.")
    kind: str = Field(default="printer", pattern=SLUG,
                      description="Machine kind; a Klipper machine is a printer unless said otherwise.")
    url: str = Field(
        description="Moonraker's primary WebSocket, e.g. ws://voron.local:7125/websocket (wss:// behind a TLS "
        "proxy). The port is Moonraker's (7125 by default), not the web interface's (80).",
    )
    api_key: str | None = Field(
        default=None,
        description="Moonraker API key (`[authorization]` in moonraker.conf; shown by Mainsail/Fluidd or "
        "`~/moonraker/scripts/fetch-apikey.sh`), sent as the X-Api-Key header when the WebSocket opens. Write it "
        "as ${ENV_VAR}. Leave it out when the gateway's address is a trusted client of Moonraker.",
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0, le=120,
        description="How long one request (server.info, printer.objects.subscribe) may take before the connection "
        "counts as lost.",
    )
    reconnect_max_s: float = Field(
        default=4.0, ge=0.5, le=300,
        description="Longest wait between two connection attempts while Moonraker is unreachable (capped, "
        "jittered backoff); the first retry after a loss is at once.",
    )
    expected_interval_s: float = Field(
        default=5.0, gt=0,
        description="The driver repeats the printer's current state at least this often, so a printer that is "
        "quiet (cold and idle: Klipper sends nothing when nothing changes) stays online; 3x this without data = "
        "offline.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        host = parts.netloc.rsplit("@", 1)[-1]
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if parts.scheme in ("http", "https") and bare:
            scheme = "wss" if parts.scheme == "https" else "ws"
            port = "" if ":" in host.lstrip("[").split("]")[-1] else f":{DEFAULT_PORT}"
            raise ValueError(f"is the web address; the driver needs Moonraker's WebSocket: use "
                             f"{scheme}://{host}{port}/websocket")
        if parts.scheme not in ("ws", "wss") or not bare or not _HOST.match(bare):
            raise ValueError(f"is not a WebSocket URL; use e.g. ws://voron.local:{DEFAULT_PORT}/websocket")
        if "@" in parts.netloc:
            raise ValueError("carries credentials; Moonraker takes an API key: put it in api_key: ${ENV_VAR}")
        if parts.path != "/websocket":
            raise ValueError(f"must end in /websocket (Moonraker's primary WebSocket), e.g. "
                             f"{parts.scheme}://{host}/websocket")
        return v
