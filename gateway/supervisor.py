"""Runs each driver forever: retries with capped jittered backoff, logs once on loss and once on recovery."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

from gateway.backoff import Backoff
from gateway.driver import Ack, Driver
from gateway.errors import DriverUnavailable
from gateway.live import LiveHub
from gateway.metrics import Metrics
from gateway.pipeline import IngestQueue
from gateway.reading import Reading

log = logging.getLogger(__name__)

BAD_INPUT_LOG_INTERVAL_S = 60.0


class DriverContext:
    """Everything a driver may touch: emit readings, count bad input, report connection state."""

    def __init__(self, driver: Driver, ingest: IngestQueue, live: LiveHub, metrics: Metrics, *,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = driver.name
        self.machine_ids = tuple(driver.machine_ids)
        self._ingest = ingest
        self._live = live
        self._metrics = metrics
        self._clock = clock
        self.backoff = backoff or Backoff()
        self.is_connected = False
        self.down_since: float | None = None
        self.last_error = ""
        self._bad_lock = threading.Lock()
        self._bad_logged: dict[str, tuple[float, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        metrics.set("driver_connected", 0, driver=self.name)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # --- data ----------------------------------------------------------------------------------------------
    async def emit(self, readings: Sequence[Reading], ack: Ack | None = None) -> None:
        """Hand readings to the pipeline; waits while the pipeline is full (back-pressure)."""
        await self._ingest.put(readings, ack, self.name)

    def emit_blocking(self, readings: Sequence[Reading], ack: Ack | None = None) -> None:
        """Same as `emit`, from a library's own thread (e.g. paho's network loop); blocks while full."""
        self._ingest.put_blocking(readings, ack, self.name)

    def bad_input(self, reason: str, machine: str | None, detail: str) -> None:
        """Count a message or line that could not be used; log it at most once a minute per reason."""
        with self._bad_lock:
            self._metrics.inc("bad_input_total", driver=self.name, reason=reason)
            now = self._clock()
            last, suppressed = self._bad_logged.get(reason, (-1e18, 0))
            if now - last >= BAD_INPUT_LOG_INTERVAL_S:
                more = f" (and {suppressed} more since the last report)" if suppressed else ""
                log.warning("%s: skipped bad input (%s) from %s: %s%s", self.name, reason, machine or "?", detail,
                            more, extra={"driver": self.name, "reason": reason, "machine": machine})
                self._bad_logged[reason] = (now, 0)
            else:
                self._bad_logged[reason] = (last, suppressed + 1)

    # --- connection state ----------------------------------------------------------------------------------
    def connected(self, machine_ids: Sequence[str] | None = None) -> None:
        """The driver is up (again). Call from the event loop thread, or use `connected_threadsafe`."""
        ids = tuple(machine_ids) if machine_ids is not None else self.machine_ids
        self._live.set_connected(ids, True)
        if self.is_connected and machine_ids is not None:
            return
        if self.down_since is not None:
            log.info("%s recovered after %.1f s", self.name, self._clock() - self.down_since,
                     extra={"driver": self.name})
            self._metrics.inc("driver_reconnects_total", driver=self.name)
        self.is_connected = True
        self.down_since = None
        self.last_error = ""
        self.backoff.reset()
        self._metrics.set("driver_connected", 1, driver=self.name)

    def disconnected(self, error: str, machine_ids: Sequence[str] | None = None) -> None:
        ids = tuple(machine_ids) if machine_ids is not None else self.machine_ids
        self._live.set_connected(ids, False)
        if machine_ids is not None and len(ids) < len(self.machine_ids):
            return
        self.last_error = error
        if self.down_since is None:
            log.warning("%s unavailable: %s; retrying with backoff", self.name, error, extra={"driver": self.name})
            self.down_since = self._clock()
        self.is_connected = False
        self._metrics.set("driver_connected", 0, driver=self.name)

    def connected_threadsafe(self, machine_ids: Sequence[str] | None = None) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.connected, machine_ids)


async def supervise(driver: Driver, ctx: DriverContext) -> None:
    """Run `driver` until cancelled, restarting it after every failure."""
    ctx.bind_loop(asyncio.get_running_loop())
    while True:
        try:
            await driver.run(ctx)
            return
        except DriverUnavailable as err:
            ctx.disconnected(str(err))
        except Exception as err:  # a driver bug must not take the gateway down; it is logged in full
            log.exception("%s failed unexpectedly", ctx.name, extra={"driver": ctx.name})
            ctx.disconnected(f"{type(err).__name__}: {err}")
        await asyncio.sleep(ctx.backoff.next())
