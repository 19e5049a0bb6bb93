"""From drivers to sinks: a bounded ingest queue, the live hub, and one writer per sink.

Memory is bounded everywhere: the ingest queue and each sink's queue hold at most a configured number of
readings; when a sink is slow or down its queue fills, the ingest stage waits, and drivers are slowed in turn
(an MQTT driver then stops acknowledging, so the broker keeps the data). A source's acknowledgement runs only
after every sink has confirmed its readings.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.backoff import Backoff
from gateway.driver import Ack
from gateway.errors import SinkConfigError
from gateway.live import LiveHub
from gateway.metrics import Metrics
from gateway.reading import Reading
from gateway.sinks.base import Sink, SinkRetry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    readings: Sequence[Reading]
    ack: Ack | None
    driver: str
    pending: int = 0

    def done(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and self.ack is not None:
            ack, self.ack = self.ack, None
            ack()


class IngestQueue:
    """Thread-safe queue bounded by readings; async consumer, async or blocking-thread producers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Batch] = deque()
        self._count = 0
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __len__(self) -> int:
        return self._count

    def _append(self, batch: Batch) -> bool:
        was_empty = not self._items
        self._items.append(batch)
        self._count += max(1, len(batch.readings))
        return was_empty

    async def put(self, readings: Sequence[Reading], ack: Ack | None, driver: str) -> None:
        while True:
            with self._cond:
                if self._count < self.capacity:
                    was_empty = self._append(Batch(readings, ack, driver))
                    break
            self._space.clear()
            await self._space.wait()
        if was_empty:
            self._ready.set()

    def put_blocking(self, readings: Sequence[Reading], ack: Ack | None, driver: str) -> None:
        with self._cond:
            while self._count >= self.capacity:
                self._cond.wait(0.5)
            was_empty = self._append(Batch(readings, ack, driver))
        if was_empty and self._loop is not None:
            self._loop.call_soon_threadsafe(self._ready.set)

    async def get_all(self) -> list[Batch]:
        while True:
            with self._cond:
                items = list(self._items)
                self._items.clear()
                self._count = 0
                self._cond.notify_all()
            if items:
                self._space.set()
                return items
            self._ready.clear()
            with self._cond:
                if self._items:
                    continue
            await self._ready.wait()


class SinkWorker:
    """Feeds one sink in batches by size and time; retries forever with backoff, never drops a batch."""

    def __init__(self, sink: Sink, metrics: Metrics, *, batch_size: int, flush_interval_s: float,
                 capacity: int, backoff: Backoff | None = None) -> None:
        self.sink = sink
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.capacity = capacity
        self.backoff = backoff or Backoff(initial_s=0.5, cap_s=30.0)
        self._queue: deque[Batch] = deque()
        self._count = 0
        self._has_data = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.state = "starting"
        self.last_error = ""
        self.oldest_ns: int | None = None
        metrics.gauge_fn("sink_queue_readings", lambda: float(self._count), sink=sink.name)

    @property
    def queued(self) -> int:
        return self._count

    async def put(self, batch: Batch) -> None:
        while self._count >= self.capacity:
            self._space.clear()
            await self._space.wait()
        self._queue.append(batch)
        self._count += len(batch.readings)
        self._has_data.set()

    def _take(self) -> list[Batch]:
        taken: list[Batch] = []
        n = 0
        while self._queue and (not taken or n + len(self._queue[0].readings) <= self.batch_size):
            b = self._queue.popleft()
            taken.append(b)
            n += len(b.readings)
        return taken

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._has_data.clear()
                await self._has_data.wait()
            if self._count < self.batch_size:
                deadline = time.monotonic() + self.flush_interval_s
                while self._count < self.batch_size and (left := deadline - time.monotonic()) > 0:
                    self._has_data.clear()
                    try:
                        await asyncio.wait_for(self._has_data.wait(), left)
                    except TimeoutError:
                        break
            taken = self._take()
            readings = [r for b in taken for r in b.readings]
            if readings:
                await self._write_until_done(readings)
            self._count -= len(readings)
            self._space.set()
            for b in taken:
                b.done()

    async def _write_until_done(self, readings: list[Reading]) -> None:
        name = self.sink.name
        while True:
            t0 = time.perf_counter()
            try:
                result = await self.sink.write(readings)
            except SinkRetry as err:
                delay = max(self.backoff.next(), err.retry_after_s or 0.0)
                self._failing(f"{err}", delay)
                await asyncio.sleep(delay)
                continue
            except SinkConfigError as err:
                delay = self.backoff.next()
                self._failing(f"configuration: {err}", delay, level=logging.ERROR)
                await asyncio.sleep(delay)
                continue
            except Exception as err:
                delay = self.backoff.next()
                log.exception("sink %s: unexpected error", name)
                self._failing(f"{type(err).__name__}: {err}", delay)
                await asyncio.sleep(delay)
                continue
            self.metrics.inc("sink_write_seconds_sum", time.perf_counter() - t0, sink=name)
            self.metrics.inc("sink_write_seconds_count", 1, sink=name)
            self.metrics.inc("readings_written_total", result.written, sink=name)
            for rej in result.rejected:
                self.metrics.inc("readings_rejected_total", len(rej.readings), sink=name)
                log.error("sink %s rejected %d reading(s): %s — line: %.200s", name, len(rej.readings), rej.reason,
                          rej.line, extra={"sink": name})
            if self.state != "ok":
                if self.state == "failing":
                    log.info("sink %s recovered", name, extra={"sink": name})
                self.state = "ok"
                self.last_error = ""
            self.backoff.reset()
            return

    def _failing(self, error: str, delay: float, level: int = logging.WARNING) -> None:
        self.metrics.inc("sink_write_errors_total", sink=self.sink.name)
        if self.state != "failing":
            log.log(level, "sink %s failing: %s; keeping %d readings and retrying (next in %.1f s)",
                    self.sink.name, error, self._count, delay, extra={"sink": self.sink.name})
        self.state = "failing"
        self.last_error = error


@dataclass
class Pipeline:
    ingest: IngestQueue
    live: LiveHub
    metrics: Metrics
    workers: list[SinkWorker] = field(default_factory=list)

    async def run(self) -> None:
        self.ingest.bind_loop(asyncio.get_running_loop())
        while True:
            batches = await self.ingest.get_all()
            readings: list[Reading] = []
            for b in batches:
                if b.readings:
                    self.metrics.inc("readings_received_total", len(b.readings), driver=b.driver)
                    readings.extend(b.readings)
            if readings:
                self.live.update(readings)
            for b in batches:
                # batches without readings (all input was bad) go through the sinks too, so that sources
                # are acknowledged in the order they sent
                b.pending = len(self.workers)
                if not self.workers:
                    b.done()
                for w in self.workers:
                    await w.put(b)

    def health(self) -> dict[str, Any]:
        return {
            "ingest_queued": len(self.ingest),
            "sinks": {w.sink.name: {"state": w.state, "queued": w.queued, "last_error": w.last_error}
                      for w in self.workers},
        }
