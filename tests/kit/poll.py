"""Waiting for a condition in a test: poll a predicate until it holds, or fail saying what was awaited.

`until` (async) and `wait_until` (sync, for tests that run without an event loop) return the predicate's first
truthy value; on timeout they raise AssertionError naming what was awaited (`what`, else the predicate's source)
and the last value the predicate returned. The predicate of `until` may be sync or async.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(pred: Callable[[], object], what: str | None, timeout_s: float, last: object) -> AssertionError:
    if what is None:
        try:
            what = " ".join(inspect.getsource(pred).split())
        except (OSError, TypeError):
            what = repr(pred)
    return AssertionError(f"timed out after {timeout_s} s waiting for {what}; last value: {last!r}")


async def until(pred: Callable[[], T | Awaitable[T]], what: str | None = None, timeout_s: float = 10.0, *,
                interval_s: float = 0.01) -> T:
    """Poll `pred` every `interval_s` on the running loop until it returns something truthy; return that."""
    last: object = None
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            while True:
                value = pred()
                if inspect.isawaitable(value):
                    value = await value
                last = value
                if value:
                    return value  # type: ignore[return-value]
                await asyncio.sleep(interval_s)
    except TimeoutError:
        if not deadline.expired():
            raise  # the predicate's own timeout, not ours
        raise _timed_out(pred, what, timeout_s, last) from None


def wait_until(pred: Callable[[], T], what: str | None = None, timeout_s: float = 10.0, *,
               interval_s: float = 0.05) -> T:
    """Poll `pred` every `interval_s`, blocking the thread, until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(pred, what, timeout_s, value)
        time.sleep(interval_s)
