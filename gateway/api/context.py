"""What the HTTP layer needs from the running gateway; `create_app(ctx)` receives one of these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.metrics import Metrics
from gateway.reading import Value
from gateway.services import Services
from gateway.state.stage import StateStage

# viewer: site-file tokens only; kiosk: accounts only (gateway/accounts); both read the board and nothing else
Role = Literal["admin", "technician", "viewer", "partner", "kiosk"]

# (machine_id, signal, start_ns, end_ns, limit) -> [(ts_ns, value, quality)]
HistoryQuery = Callable[[str, str, int, int, int], Awaitable[list[tuple[int, Value, str]]]]


@dataclass
class ApiContext:
    site_id: str
    site_name: str
    machines: StateStage  # machine objects (latest values and states) and the WebSocket fan-out
    metrics: Metrics
    tokens: Mapping[str, tuple[str, Role]]  # token -> (name, role)
    history: HistoryQuery | None
    health: Callable[[], dict[str, Any]]
    version: str = "0.1.0"
    max_body_bytes: int = 1 << 20  # larger request bodies are answered 413 without being read
    services: Services | None = None  # alerts, maintenance, events, OEE, billing; None: the business store is off
    partners: Mapping[str, str] = field(default_factory=dict)  # token -> partner id, for tokens of role partner
