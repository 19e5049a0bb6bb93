"""Runs each driver forever: retries with capped jittered backoff, logs once on loss and once on recovery.

Every driver is a fault boundary. Whatever its code raises — in its task, in a library thread such as paho's
network loop (through `fault_threadsafe` or `guard`), in a callback — restarts that driver alone,
counted in `driver_restarts_total` and shown in health; no other driver notices. Readings cross the boundary only
through `emit`, where source timestamps the gateway's clock cannot believe are handled by the site's policy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

from gateway.backoff import Backoff
from gateway.config.models import Timestamps
from gateway.driver import Ack, Driver, Retry
from gateway.errors import DriverUnavailable
from gateway.metrics import Metrics
from gateway.pipeline import IngestQueue
from gateway.reading import Reading, now_ns
from gateway.state.stage import StateStage

log = logging.getLogger(__name__)

BAD_INPUT_LOG_INTERVAL_S = 60.0
P = ParamSpec("P")
R = TypeVar("R")


class DriverFault(Exception):
    """A driver failed in a place the supervisor does not run (a library thread, a callback)."""


def backoff_of(retry: Retry) -> Backoff:
    return Backoff(initial_s=retry.initial_s, cap_s=retry.cap_s, immediate_first=retry.immediate_first)


class SupervisedContext:
    """The gateway's `DriverContext` (gateway/driver.py) for one driver, plus what health and metrics read about
    it (connected, stalled, restarts, last error). Drivers see only the protocol's members."""

    def __init__(self, driver: Driver, ingest: IngestQueue, live: StateStage, metrics: Metrics, *,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic,
                 timestamps: Timestamps | None = None, stall_after_s: float | None = None) -> None:
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
        self._fault: asyncio.Future[None] | None = None
        self.restarts = 0
        # a connected driver that delivers nothing for this long while its machines are expected to report is
        # stalled (None: never)
        self.stall_after_s = stall_after_s
        self.last_delivery = clock()
        self.connected_at = clock()
        ts = timestamps or Timestamps()
        self._ahead_ns = int(ts.max_ahead_s * 1e9)
        self._age_ns = int(ts.max_age_s * 1e9)
        self._reject_bad_time = ts.policy == "reject"
        metrics.set("driver_connected", 0, driver=self.name)
        metrics.set("driver_restarts_total", 0, driver=self.name)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # --- data ----------------------------------------------------------------------------------------------
    async def emit(self, readings: Sequence[Reading], ack: Ack | None = None) -> None:
        """Hand readings to the pipeline; waits while the pipeline is full (back-pressure)."""
        if readings:
            readings = self._checked_times(readings)
            self.last_delivery = self._clock()
        await self._ingest.put(readings, ack, self.name)

    def emit_blocking(self, readings: Sequence[Reading], ack: Ack | None = None) -> None:
        """Same as `emit`, from a library's own thread (e.g. paho's network loop); blocks while full."""
        if readings:
            readings = self._checked_times(readings)
            self.last_delivery = self._clock()
        self._ingest.put_blocking(readings, ack, self.name)

    def _checked_times(self, readings: Sequence[Reading]) -> Sequence[Reading]:
        """Apply the timestamp policy: a source time too far ahead or too old is never taken as it is."""
        now = now_ns()
        latest, earliest = now + self._ahead_ns, now - self._age_ns
        if all(earliest <= r.source_ns <= latest for r in readings):
            return readings  # the usual case: nothing to copy
        out: list[Reading] = []
        for r in readings:
            if earliest <= r.source_ns <= latest:
                out.append(r)
                continue
            ahead = r.source_ns > latest
            shift_s = (r.source_ns - now) / 1e9
            self.bad_input("timestamp_ahead" if ahead else "timestamp_too_old", r.machine,
                           f"signal {r.signal!r}: source time {'+' if ahead else ''}{shift_s:.0f} s from the gateway's "
                           f"clock; {'dropped' if self._reject_bad_time else 'stamped with the receive time'} "
                           "(timestamps.policy)")
            if not self._reject_bad_time:
                out.append(Reading(r.machine, r.signal, r.value, r.unit, r.quality, r.receive_ns, r.receive_ns))
        return out

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
        """The driver is up (again). Call from the event loop thread."""
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

    def disconnected(self, error: str, machine_ids: Sequence[str] | None = None, *, retrying: bool = True) -> None:
        ids = tuple(machine_ids) if machine_ids is not None else self.machine_ids
        self._live.set_connected(ids, False)
        if machine_ids is not None and len(ids) < len(self.machine_ids):
            return
        self.last_error = error
        if self.down_since is None:
            log.warning("%s unavailable: %s%s", self.name, error, "; retrying with backoff" if retrying else "",
                        extra={"driver": self.name})
            self.down_since = self._clock()
        self.is_connected = False
        self._metrics.set("driver_connected", 0, driver=self.name)

    def stalled(self) -> bool:
        """Connected, but nothing delivered for longer than its machines are expected to stay quiet."""
        if self.stall_after_s is None or not self.is_connected:
            return False
        now = self._clock()
        return now - max(self.last_delivery, self.connected_at) > self.stall_after_s

    # --- faults --------------------------------------------------------------------------------------------
    def fault(self, err: BaseException) -> None:
        """The driver failed outside its task: the supervisor restarts it (call on the event loop thread)."""
        if self._fault is not None and not self._fault.done():
            self._fault.set_exception(DriverFault(f"{type(err).__name__}: {err}").with_traceback(err.__traceback__))

    def fault_threadsafe(self, err: BaseException) -> None:
        """`fault` from a library's own thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.fault, err)

    def guard(self, fn: Callable[P, R]) -> Callable[P, R | None]:
        """Wrap a callback a library calls from its own thread: whatever it raises restarts this driver instead
        of killing the library's thread (paho's network loop dies on an exception in a callback)."""

        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                log.error("%s: %s failed in a library callback: %s: %s; restarting the driver", self.name,
                          getattr(fn, "__name__", "callback"), type(err).__name__, err, exc_info=err,
                          extra={"driver": self.name})
                self.fault_threadsafe(err)
                return None

        return guarded

    def _arm(self) -> asyncio.Future[None]:
        assert self._loop is not None
        self._fault = self._loop.create_future()
        return self._fault


async def supervise(driver: Driver, ctx: SupervisedContext) -> None:
    """Run `driver` until cancelled, restarting it after every failure, wherever the failure happened."""
    ctx.bind_loop(asyncio.get_running_loop())
    while True:
        ctx.connected_at = ctx._clock()
        try:
            await _run_once(driver, ctx)
            return
        except DriverUnavailable as err:
            ctx.disconnected(str(err))
        except Exception as err:  # a driver bug must not take the gateway down; it is logged in full
            if not isinstance(err, DriverFault):
                log.exception("%s failed unexpectedly", ctx.name, extra={"driver": ctx.name})
            ctx.restarts += 1
            ctx._metrics.inc("driver_restarts_total", driver=ctx.name)
            ctx.disconnected(f"{type(err).__name__}: {err}")
        await asyncio.sleep(ctx.backoff.next())


async def _run_once(driver: Driver, ctx: SupervisedContext) -> None:
    """One run of the driver; a fault reported from another thread ends it like an exception in the task."""
    fault = ctx._arm()
    task = asyncio.create_task(driver.run(ctx), name=f"driver-run:{ctx.name}")
    # however this run ends — re-raised below, superseded by a fault, or after we were cancelled while it was
    # still cleaning up (the gateway stopping) — its error is ours, never asyncio's "exception never retrieved"
    task.add_done_callback(_retrieved)
    try:
        await asyncio.wait({task, fault}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            # the driver cleans up (closes its socket, stops its thread) before it is started again
            await asyncio.gather(task, return_exceptions=True)
    if fault.done():
        fault.result()  # raises the DriverFault
    else:
        fault.cancel()
    task.result()


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
