"""WebSocket fan-out: one bounded queue per connected client; a slow client loses its oldest messages."""

from __future__ import annotations

import asyncio
from typing import Any

SUBSCRIBER_QUEUE = 1000


class Fanout:
    def __init__(self) -> None:
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped_to_slow_clients = 0

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subs.discard(q)

    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, msg: dict[str, Any]) -> None:
        for q in self._subs:
            if q.full():
                # a slow browser tab must not hold memory: it loses its oldest update, and the next update of
                # the same machine supersedes it anyway
                q.get_nowait()
                self.dropped_to_slow_clients += 1
            q.put_nowait(msg)
