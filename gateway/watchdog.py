"""The event-loop watchdog: measures loop lag all the time, says when it stays high, and names what held the loop.

One coroutine sleeps `interval_s` over and over; how much later than asked it wakes up is the loop lag (what any
other task, a WebSocket client or an MQTT acknowledgement, waits on top of its own work). A thread beside the loop
watches the coroutine's heartbeat: when the loop has not come back for `threshold_s`, the thread takes the stack
of the loop's thread at that moment — the code that holds the loop — and logs it, once per episode (and at most
once every `stack_log_interval_s`; not in the first `startup_grace_s`, while the gateway opens and connects).
Health is degraded while the lag has stayed above the threshold for `for_s`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

from gateway.metrics import Metrics

log = logging.getLogger(__name__)

WINDOW_S = 1.0  # the lag gauge shows the worst lag of the last second


class LoopWatchdog:
    def __init__(self, metrics: Metrics, *, threshold_s: float = 0.25, for_s: float = 10.0,
                 interval_s: float = 0.05, stack_log_interval_s: float = 600.0, startup_grace_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.threshold_s = threshold_s
        self.for_s = for_s
        self.interval_s = interval_s
        self.stack_log_interval_s = stack_log_interval_s
        # start-up (opening databases, connecting, first imports) may hold the loop briefly: counted, not logged
        self.startup_grace_s = startup_grace_s
        self._started_at = clock()
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque()  # (when, lag) over the last WINDOW_S
        self._above_since: float | None = None  # first moment of the current run of lag above the threshold
        self._below_since: float | None = None
        self.degraded_reason = ""
        self.worst_s = 0.0
        self._beat = clock()
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._stack_logged_at: float | None = None
        self._episode_logged = False
        self.held_total = 0
        metrics.describe("event_loop_lag_seconds", "gauge", "Worst event-loop lag over the last second.")
        metrics.describe("event_loop_held_total", "counter",
                         "Times something held the event loop longer than the lag threshold.")
        metrics.gauge_fn("event_loop_lag_seconds", self.lag_s)
        metrics.set("event_loop_held_total", 0)

    # --- figures -------------------------------------------------------------------------------------------
    def lag_s(self) -> float:
        """The worst lag of the last second, including a hold still going on right now."""
        now = self.clock()
        recent = max((lag for t, lag in self._samples if now - t <= WINDOW_S), default=0.0)
        ongoing = max(0.0, now - self._beat - self.interval_s)
        return max(recent, ongoing)

    def record(self, lag: float, now: float) -> None:
        """One measurement (public so that tests can step it with their own clock)."""
        self._samples.append((now, lag))
        while self._samples and now - self._samples[0][0] > WINDOW_S:
            self._samples.popleft()
        self.worst_s = max(self.worst_s, lag)
        if lag > self.threshold_s:
            self._below_since = None
            if self._above_since is None:
                self._above_since = now - lag  # the loop was held from when it should have woken
            if not self.degraded_reason and now - self._above_since >= self.for_s:
                self.degraded_reason = (f"event loop lag above {self.threshold_s * 1000:.0f} ms for "
                                        f"{now - self._above_since:.0f} s (last {lag * 1000:.0f} ms): something "
                                        "holds the loop; the log names it")
                log.error("health degraded: %s", self.degraded_reason)
        else:
            if self._below_since is None:
                self._below_since = now
            calm = now - self._below_since
            # hysteresis: a few good samples between long holds do not end a run of lag; a calm second does,
            # and a degraded loop is healthy again after `for_s` of calm
            if self.degraded_reason and calm >= self.for_s:
                log.info("event loop responsive again (lag below %.0f ms for %.0f s)", self.threshold_s * 1000, calm)
                self.degraded_reason = ""
                self._above_since = None
            elif not self.degraded_reason and calm >= WINDOW_S:
                self._above_since = None

    # --- running -------------------------------------------------------------------------------------------
    async def run(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = self._started_at = self.clock()
        thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._stop.clear()
        thread.start()
        try:
            while True:
                before = self.clock()
                await asyncio.sleep(self.interval_s)
                now = self.clock()
                self._beat = now
                self._episode_logged = False
                self.record(max(0.0, now - before - self.interval_s), now)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        """In a thread: when the loop does not come back in time, log the stack that holds it."""
        while not self._stop.wait(self.threshold_s / 4):
            held = self.clock() - self._beat - self.interval_s
            if held <= self.threshold_s or self._episode_logged:
                continue
            self._episode_logged = True
            self.held_total += 1
            self.metrics.inc("event_loop_held_total")
            now = self.clock()
            if now - self._started_at < self.startup_grace_s:
                continue
            if self._stack_logged_at is not None and now - self._stack_logged_at < self.stack_log_interval_s:
                continue
            self._stack_logged_at = now
            log.warning("the event loop has been held for %.0f ms (threshold %.0f ms) by:\n%s", held * 1000,
                        self.threshold_s * 1000, self.holder())

    def holder(self) -> str:
        """The stack of the loop's thread right now (what runs instead of awaiting), innermost call last."""
        if self._loop_thread is None:
            return "(the loop has not started)"
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "(the loop's thread has ended)"
        return "".join(traceback.format_stack(frame)).rstrip()
