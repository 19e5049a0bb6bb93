"""Stopping the gateway on Ctrl-C, SIGTERM or a deadline — always, whatever state the drivers are in.

The signal handlers and the deadline do not depend on the event loop being responsive: they are plain Python
signal handlers and a timer thread, which ask the loop to stop (thread-safe) and start a grace timer. If the
orderly shutdown has not finished when the grace ends (a thread stuck in a system call, a loop held by a bug), the
stack of the main thread is logged and the process exits with status 1. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

GRACE_S = 8.0


class Stopper:
    def __init__(self, *, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self.reason = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._previous: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    def install(self, stop: asyncio.Event, seconds: float | None = None) -> None:
        """Call from the running loop: SIGINT and SIGTERM (and `seconds`, if given) set `stop`."""
        self._loop = asyncio.get_running_loop()
        self._event = stop
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        if seconds:
            self._timer = threading.Timer(seconds, self.request, args=(f"--seconds {seconds:g} elapsed",))
            self._timer.daemon = True
            self._timer.start()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.reason:  # asked twice: the user means it
            if signum == signal.SIGINT:
                os.write(2, b"\nsecond Ctrl-C: exiting now\n")
                os._exit(130)
            return
        self.request(name)

    def request(self, reason: str) -> None:
        """Stop (from any thread, a signal handler included)."""
        with self._lock:
            if self.reason:
                return
            self.reason = reason
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it is stopping anyway
                loop.call_soon_threadsafe(event.set)
        threading.Thread(target=self._grace, name="stop-grace", daemon=True).start()

    def _grace(self) -> None:
        if self._finished.wait(self.grace_s):
            return
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(ended)"
        log.error("stopping (%s) did not finish within %.0f s; exiting now. The main thread was at:\n%s",
                  self.reason, self.grace_s, stack.rstrip())
        logging.shutdown()
        os._exit(1)

    def finished(self) -> None:
        """The orderly shutdown is over (call after `asyncio.run` returned): no forced exit, handlers restored."""
        self._finished.set()
        if self._timer is not None:
            self._timer.cancel()
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        self._previous.clear()
