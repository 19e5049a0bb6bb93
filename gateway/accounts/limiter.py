"""Failed-attempt limits: after `max_failures` failures of one key (a user name, a client address) within
`window_s`, the key is refused until the oldest of them leaves the window.

In memory: a restart forgets the counts (an attacker gains one window per restart, which an admin notices in the
audit log). The number of keys is bounded; past it, the keys failing longest ago are dropped first.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

NS = 1_000_000_000


class FailureLimiter:
    def __init__(self, clock: Callable[[], int], *, max_failures: int, window_s: float,
                 max_keys: int = 10_000) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.clock = clock
        self.max_failures = max_failures
        self.window_ns = int(window_s * NS)
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()
        self._lock = threading.Lock()  # the API's worker threads share one limiter

    def _recent(self, key: str, now: int) -> deque[int] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_ns:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after_s(self, key: str) -> int | None:
        """Whole seconds until `key` may try again, or None when it may now."""
        with self._lock:
            now = self.clock()
            times = self._recent(key, now)
            if times is None or len(times) < self.max_failures:
                return None
            wait_ns = times[-self.max_failures] + self.window_ns - now
        return max(1, math.ceil(wait_ns / NS))

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
