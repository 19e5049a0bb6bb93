"""An MQTT broker inside the gateway process (amqtt), for `kartech demo` and small benches without Mosquitto."""

from __future__ import annotations

import logging
import socket
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    async def start(self, attempts: int = 5) -> int:
        """Start listening; with port 0 a free port is chosen (retried if another process takes it first)."""
        for logger in ("amqtt", "transitions"):  # amqtt warns about its own optional plugins at every start
            logging.getLogger(logger).setLevel(logging.ERROR)
        last: Exception | None = None
        for _ in range(attempts):
            port = self.port or _free_port(self.host)
            broker = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}", "max_connections": 1000}},
                "sys_interval": 0,
                "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                "topic-check": {"enabled": False},
            })
            try:
                await broker.start()
            except Exception as err:  # amqtt wraps bind errors in its own exception types
                last = err
                if self.port:
                    break
                continue
            self._broker, self.port = broker, port
            log.info("embedded MQTT broker listening on %s:%d", self.host, port)
            return port
        raise OSError(f"embedded MQTT broker could not listen on {self.host}:{self.port}: {last}")

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
