"""The event bus: every event (state changes, jobs, maintenance, alert transitions) goes through it, and every
part that wants events subscribes one callable.

Inside `batch()` (a state stage iteration, a tick) events are collected; when the batch ends they are persisted
together — one transaction with everything else written in the batch (alert rows, production) — and only then
delivered, so that every listener (the WebSocket, the usage ledger, MQTT state topics) sees them with their ids.
Outside a batch an event is persisted and delivered at once. API routes run in worker threads and emit too (an
acknowledged alert): a lock makes them wait for a running batch instead of joining it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

from gateway.state.events import Event

Listener = Callable[[Event], None]
# writes events (and whatever else the batch produced: it is called at the end of every batch, events or not)
# and returns them with their ids
Persist = Callable[[Sequence[Event]], list[Event]]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._pending: list[Event] = []
        self._depth = 0
        self._lock = threading.RLock()
        self.persist: Persist | None = None
        self.transaction: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event)
            if not self._depth:
                try:
                    with self.transaction():
                        self._flush()
                finally:
                    self._pending.clear()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect events until the end; write them (with the batch's other writes) in one transaction."""
        with self._lock:
            if self._depth:
                yield
                return
            self._depth += 1
            try:
                with self.transaction():
                    yield
                    self._flush()
            finally:
                self._depth -= 1
                self._pending.clear()  # a failed batch delivers nothing (its writes were rolled back)

    def _flush(self) -> None:
        # listeners may emit more events (an alert transition of a rule): delivered in the same flush
        self._depth += 1
        try:
            first = True
            while self._pending or first:
                first = False
                events, self._pending = self._pending, []
                if self.persist is not None:
                    events = self.persist(events)
                for e in events:
                    for listener in self._listeners:
                        listener(e)
        finally:
            self._depth -= 1
