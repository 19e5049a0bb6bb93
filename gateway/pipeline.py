"""From drivers to sinks: a bounded ingest queue, the live view, the durable outbox, and one writer per sink.

Readings are committed to the outbox in groups; only then are their sources acknowledged (an MQTT PUBACK), and
only then are they handed to the state stage (states, alerts, the business store: `gateway.state.stage`), which
runs as a task of its own — the commit and the acknowledgement never wait for it. The latest-values view is
updated as readings are taken in (a dictionary write per reading).
Each sink writer follows the outbox from its own cursor: from memory while it keeps up, from disk after a
restart or a long outage. Memory is bounded everywhere: the ingest queue holds at most `queue_size` readings, a
sink writer keeps at most that many in memory, and the outbox is bounded in bytes with a configured policy.
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
from gateway.live import LiveValues
from gateway.metrics import Metrics
from gateway.outbox import Outbox, OutboxError
from gateway.reading import Reading, storable
from gateway.sinks.base import Rejected, Sink, SinkRetry, WriteResult
from gateway.state.stage import StateStage

log = logging.getLogger(__name__)

DROP_REPORT_INTERVAL_S = 60.0
ABSORB_SLICE = 500  # driver batches taken in between two yields to the event loop


@dataclass(slots=True)
class Batch:
    readings: Sequence[Reading]
    ack: Ack | None
    driver: str


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

    def take_nowait(self) -> list[Batch]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._count = 0
            self._cond.notify_all()
        if items:
            self._space.set()
        return items

    async def get_all(self) -> list[Batch]:
        while True:
            items = self.take_nowait()
            if items:
                return items
            self._ready.clear()
            with self._cond:
                if self._items:
                    continue
            await self._ready.wait()


class SinkWorker:
    """Feeds one sink from the outbox in batches by size and time; retries forever, never skips a group."""

    def __init__(self, sink: Sink, outbox: Outbox, metrics: Metrics, *, batch_size: int, flush_interval_s: float,
                 memory_readings: int, backoff: Backoff | None = None) -> None:
        self.sink = sink
        self.outbox = outbox
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.memory_readings = memory_readings
        self.backoff = backoff or Backoff(initial_s=0.5, cap_s=10.0)
        self._mem: deque[tuple[int, Sequence[Reading]]] = deque()
        self._mem_count = 0
        self._has_data = asyncio.Event()
        self.state = "starting"
        self.last_error = ""
        name = sink.name
        metrics.gauge_fn("sink_queue_readings", lambda: float(outbox.queued_readings(name)), sink=name)
        metrics.gauge_fn("sink_oldest_queued_seconds", lambda: outbox.oldest_age_s(name), sink=name)
        metrics.gauge_fn("readings_dead_lettered_total", lambda: float(outbox.dead_lettered[name]), sink=name)
        metrics.gauge_fn("readings_dropped_total", lambda: float(outbox.dropped[name]), sink=name)

    @property
    def cursor(self) -> int:
        return self.outbox.cursors.get(self.sink.name, self.outbox.last_seq)

    def committed(self, seq: int, readings: Sequence[Reading]) -> None:
        """A group was committed to the outbox; keep it in memory while there is room (else read from disk)."""
        if self._mem_count + len(readings) <= self.memory_readings and (not self._mem or self._mem[-1][0] == seq - 1):
            self._mem.append((seq, readings))
            self._mem_count += len(readings)
        self._has_data.set()

    def _pending(self) -> int:
        return self.outbox.last_seq - self.cursor

    async def _next_groups(self) -> list[tuple[int, Sequence[Reading]]]:
        while self._mem and self._mem[0][0] <= self.cursor:
            self._mem_count -= len(self._mem.popleft()[1])
        if self._mem and self._mem[0][0] == self.cursor + 1:
            out: list[tuple[int, Sequence[Reading]]] = []
            n = 0
            for seq, readings in self._mem:
                if out and n + len(readings) > self.batch_size:
                    break
                out.append((seq, readings))
                n += len(readings)
            return out
        self._mem.clear()  # behind the memory window (restart, long outage): catch up from disk, oldest first
        self._mem_count = 0
        return list(await self.outbox.read(self.sink.name, self.batch_size))

    async def run(self) -> None:
        while True:
            if self._pending() <= 0:
                self._has_data.clear()
                await self._has_data.wait()
                continue
            if self._mem_count < self.batch_size and self._mem and self._mem[0][0] == self.cursor + 1:
                deadline = time.monotonic() + self.flush_interval_s
                while self._mem_count < self.batch_size and (left := deadline - time.monotonic()) > 0:
                    self._has_data.clear()
                    try:
                        async with asyncio.timeout(left):
                            await self._has_data.wait()
                    except TimeoutError:
                        break
            groups = await self._next_groups()
            if not groups:
                await asyncio.sleep(0.05)
                continue
            self.outbox.taken[self.sink.name] = groups[-1][0]
            readings = [r for _, rs in groups for r in rs]
            await self._write_until_done(readings)
            await self.outbox.confirm(self.sink.name, groups[-1][0])

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
                # not a bad moment but something in the data the sink cannot take (a string SQLite refuses, a
                # number out of range...): find the reading(s) by splitting; they go to dead letters, the rest land
                log.warning("sink %s failed on a batch of %d readings (%s: %s); isolating what it cannot store",
                            name, len(readings), type(err).__name__, err, extra={"sink": name})
                result = await self._isolate(readings)
            self.metrics.inc("sink_batch_seconds_sum", time.perf_counter() - t0, sink=name)
            self.metrics.inc("sink_batch_seconds_count", 1, sink=name)
            self.metrics.inc("readings_written_total", result.written, sink=name)
            if result.rejected:
                try:
                    await self.outbox.dead_letter(name, result.rejected)
                except Exception as err:  # the disk refuses even that: say so, and go on with the good data
                    log.error("sink %s: %d rejected reading(s) could not be kept in dead_letters: %s", name,
                              sum(len(r.readings) for r in result.rejected), err, extra={"sink": name})
                for rej in result.rejected:
                    log.error("sink %s rejected %d reading(s), kept in dead_letters: %s — line: %.200s", name,
                              len(rej.readings), storable(rej.reason), storable(rej.line), extra={"sink": name})
            if self.state != "ok":
                if self.state == "failing":
                    log.info("sink %s recovered", name, extra={"sink": name})
                self.state = "ok"
                self.last_error = ""
            self.backoff.reset()
            return

    async def _isolate(self, readings: list[Reading]) -> WriteResult:
        """Write halves until every reading the sink fails on is alone: those are rejected with the error; a
        transient failure meanwhile (SinkRetry) is retried as usual."""
        out = WriteResult(0)
        halves = [readings] if len(readings) == 1 else [readings[: len(readings) // 2], readings[len(readings) // 2:]]
        for half in halves:
            while True:
                try:
                    got = await self.sink.write(half)
                except (SinkRetry, SinkConfigError) as err:
                    delay = self.backoff.next()
                    self._failing(str(err), delay)
                    await asyncio.sleep(delay)
                    continue
                except Exception as err:
                    if len(half) > 1:
                        got = await self._isolate(half)
                    else:
                        got = WriteResult(0, [Rejected((half[0],), "", f"{type(err).__name__}: {err}")])
                break
            out.written += got.written
            out.rejected += got.rejected
        return out

    def _failing(self, error: str, delay: float, level: int = logging.WARNING) -> None:
        self.metrics.inc("sink_retries_total", sink=self.sink.name)
        if self.state != "failing":
            log.log(level, "sink %s failing: %s; keeping %d queued readings and retrying (next in %.1f s)",
                    self.sink.name, error, self.outbox.queued_readings(self.sink.name), delay,
                    extra={"sink": self.sink.name})
        self.state = "failing"
        self.last_error = error


@dataclass
class Pipeline:
    """Takes what drivers emit into the live view, commits groups to the outbox, acknowledges sources, then hands
    the committed readings to the state stage."""

    ingest: IngestQueue
    values: LiveValues
    metrics: Metrics
    outbox: Outbox
    workers: list[SinkWorker] = field(default_factory=list)
    stage: StateStage | None = None
    commit_interval_s: float = 0.02
    _pending: list[Batch] = field(default_factory=list)
    _pending_readings: int = 0
    _dropped_unreported: int = 0
    _dropped_reported_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=0.2, cap_s=10.0))
    state: str = "ok"
    last_error: str = ""

    async def run(self) -> None:
        self.ingest.bind_loop(asyncio.get_running_loop())
        last_commit = 0.0
        while True:
            if not self._pending:
                await self._absorb_yielding(await self.ingest.get_all())
            elif self._pending_readings < self.ingest.capacity:
                await self._absorb_yielding(self.ingest.take_nowait())
            if self.state == "failing":
                await asyncio.sleep(self.backoff.next())
                self._absorb_if_room()
            elif self.commit_interval_s:
                # group commit: let more arrive, up to the interval since the last commit
                left = last_commit + self.commit_interval_s - time.monotonic()
                if left > 0:
                    await asyncio.sleep(left)
                    self._absorb_if_room()
            if not await self._room():
                continue
            if await self._commit():
                last_commit = time.monotonic()

    async def _absorb_yielding(self, batches: list[Batch]) -> None:
        """`_absorb` in slices, yielding to the loop between them: a backlog of many thousand messages must not
        hold the event loop (the API, the WebSocket, acknowledgements) for seconds."""
        for i in range(0, len(batches), ABSORB_SLICE):
            if i:
                await asyncio.sleep(0)
            self._absorb(batches[i:i + ABSORB_SLICE])

    def _absorb_if_room(self) -> None:
        if self._pending_readings < self.ingest.capacity:
            self._absorb(self.ingest.take_nowait())

    def _absorb(self, batches: list[Batch]) -> None:
        received: dict[str, int] = {}
        for b in batches:
            if b.readings:
                self.values.apply(b.readings)
                received[b.driver] = received.get(b.driver, 0) + len(b.readings)
                self._pending_readings += len(b.readings)
        for driver, n in received.items():
            self.metrics.inc("readings_received_total", n, driver=driver)
        self._pending += batches

    def _publish(self, msg: dict[str, Any]) -> None:
        if self.stage is not None:
            self.stage.fanout.publish(msg)

    async def _commit(self) -> bool:
        readings = [r for b in self._pending for r in b.readings]
        try:
            seq = await self.outbox.append(readings) if readings else None
        except OutboxError as err:
            if self.state != "failing":
                log.error("%s; holding %d readings in memory and not acknowledging sources until it works",
                          err, self._pending_readings)
            self.state, self.last_error = "failing", str(err)
            self.metrics.inc("outbox_errors_total")
            return False
        if self.state == "failing":
            log.info("outbox writable again; %d held readings committed", self._pending_readings)
        self.state, self.last_error = "ok", ""
        self.backoff.reset()
        committed: dict[str, int] = {}
        for b in self._pending:
            if b.ack is not None:
                b.ack()
            if b.readings:
                committed[b.driver] = committed.get(b.driver, 0) + len(b.readings)
        for driver, n in committed.items():
            self.metrics.inc("readings_committed_total", n, driver=driver)
        if seq is not None:
            for w in self.workers:
                w.committed(seq, readings)
            if self.stage is not None:
                self.stage.offer(readings)
        self._pending, self._pending_readings = [], 0
        return True

    async def _room(self) -> bool:
        """Apply the outbox's full policy. False: nothing may be committed now (check again)."""
        if not self.outbox.full():
            return True
        if self.outbox.policy == "drop_oldest":
            dropped = 0
            while self.outbox.full() and self.outbox.rows:
                dropped += await self.outbox.drop_oldest()
            self._dropped_unreported += dropped
            now = time.monotonic()
            last = self._dropped_reported_at
            if self._dropped_unreported and (last is None or now - last >= DROP_REPORT_INTERVAL_S):
                # once when dropping starts, then a summary at most every interval (not one line per commit)
                log.error("outbox full (%d bytes): dropped the %d oldest queued readings%s", self.outbox.max_bytes,
                          self._dropped_unreported, "" if last is None else " since the last report")
                self._publish({"type": "gateway", "event": "outbox_dropped",
                                         "readings": self._dropped_unreported})
                self._dropped_unreported, self._dropped_reported_at = 0, now
            return True
        if self.state != "backpressure":
            log.error("outbox full (%d bytes): not taking or acknowledging new data until sinks catch up",
                      self.outbox.max_bytes)
            self._publish({"type": "gateway", "event": "outbox_full"})
            self.metrics.inc("outbox_full_total")
        self.state, self.last_error = "backpressure", "outbox full"
        await self.outbox.space.wait()
        self.state, self.last_error = "ok", ""
        return False

    def health(self) -> dict[str, Any]:
        return {
            "ingest_queued": len(self.ingest),
            "outbox": {"state": self.state, "last_error": self.last_error, "bytes": self.outbox.bytes,
                       "max_bytes": self.outbox.max_bytes, "queued_groups": len(self.outbox.rows)},
            "sinks": {w.sink.name: {"state": w.state, "queued": self.outbox.queued_readings(w.sink.name),
                                    "oldest_queued_s": round(self.outbox.oldest_age_s(w.sink.name), 1),
                                    "last_error": w.last_error}
                      for w in self.workers},
        }
