"""The event-loop watchdog: lag measured, degraded only when it lasts, the holder's stack named."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.metrics import Metrics
from gateway.watchdog import LoopWatchdog


def test_lag_must_last_before_health_is_degraded_and_calm_must_last_before_it_is_not() -> None:
    clock = [0.0]
    wd = LoopWatchdog(Metrics(), threshold_s=0.25, for_s=10.0, clock=lambda: clock[0])
    t = 0.0
    # a loop held 3 s at a time with a few quick wake-ups in between: a run of lag, not calm
    for _ in range(3):
        t += 3.0
        wd.record(3.0, t)
        for _ in range(3):
            t += 0.05
            wd.record(0.001, t)
        assert wd.degraded_reason == ""  # 9.45 s of it so far
    t += 3.0
    wd.record(3.0, t)
    assert "event loop lag above 250 ms" in wd.degraded_reason
    # one calm second does not end it; ten do
    for _ in range(20):
        t += 0.05
        wd.record(0.001, t)
    assert wd.degraded_reason
    for _ in range(200):
        t += 0.05
        wd.record(0.001, t)
    assert wd.degraded_reason == ""


def test_short_hiccups_separated_by_calm_never_degrade() -> None:
    wd = LoopWatchdog(Metrics(), threshold_s=0.25, for_s=10.0, clock=lambda: 0.0)
    t = 0.0
    for _ in range(60):  # a 0.4 s hiccup every 2 s for two minutes
        t += 0.4
        wd.record(0.4, t)
        for _ in range(32):
            t += 0.05
            wd.record(0.0, t)
    assert wd.degraded_reason == ""


def _hold_the_loop_like_a_spinning_driver(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_the_code_holding_the_loop_is_logged_once_and_lag_is_measured(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    wd = LoopWatchdog(metrics, threshold_s=0.1, for_s=10.0, interval_s=0.02, startup_grace_s=0.0)
    task = asyncio.create_task(wd.run())
    try:
        await asyncio.sleep(0.1)
        with caplog.at_level(logging.WARNING, logger="gateway.watchdog"):
            _hold_the_loop_like_a_spinning_driver(0.4)
            await asyncio.sleep(0.1)
            _hold_the_loop_like_a_spinning_driver(0.4)  # a second episode within the log interval: counted only
            await asyncio.sleep(0.1)
        assert wd.worst_s >= 0.35
        assert 'kartech_event_loop_held_total 2' in metrics.render()
        assert metrics.value("event_loop_lag_seconds") >= 0.35  # the worst of the last second
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    held = [r for r in caplog.records if "has been held" in r.getMessage()]
    assert len(held) == 1
    assert "_hold_the_loop_like_a_spinning_driver" in held[0].getMessage()
    assert "kartech_event_loop_lag_seconds" in metrics.render()


async def test_holds_during_start_up_are_counted_but_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    wd = LoopWatchdog(metrics, threshold_s=0.1, for_s=10.0, interval_s=0.02, startup_grace_s=30.0)
    task = asyncio.create_task(wd.run())
    try:
        await asyncio.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="gateway.watchdog"):
            _hold_the_loop_like_a_spinning_driver(0.3)
            await asyncio.sleep(0.1)
        assert 'kartech_event_loop_held_total 1' in metrics.render()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not [r for r in caplog.records if "has been held" in r.getMessage()]
