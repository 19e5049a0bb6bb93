"""The supervisor as a fault boundary: a driver failing in its task, in a library thread or in a callback is
restarted alone and counted; the timestamp policy applies to everything a driver emits."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from kit.poll import until

from gateway.backoff import Backoff
from gateway.config.models import Timestamps
from gateway.driver import DriverContext
from gateway.errors import DriverUnavailable
from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.pipeline import IngestQueue
from gateway.reading import Quality, Reading, now_ns
from gateway.state.stage import StateStage
from gateway.supervisor import SupervisedContext, supervise


def meta(mid: str) -> MachineMeta:
    return MachineMeta(id=mid, name=mid, kind="printer", driver="test", site="s")


class ThreadDriver:
    """Like paho: its own thread calls a callback; the callback fails on the first run only."""

    def __init__(self) -> None:
        self.name = "lib:a"
        self.machine_ids = ["a"]
        self.runs = 0
        self.cleaned_up = 0

    async def run(self, ctx: DriverContext) -> None:
        self.runs += 1
        run_no = self.runs

        def callback() -> None:
            if run_no == 1:
                raise RecursionError("maximum recursion depth exceeded")
            t = now_ns()
            ctx.emit_blocking([Reading("a", "x", run_no, None, Quality.GOOD, t, t)])

        guarded = ctx.guard(callback)
        threading.Thread(target=guarded, daemon=True).start()
        ctx.connected()
        try:
            await asyncio.Event().wait()  # like waiting for a disconnect that never comes
        finally:
            self.cleaned_up += 1


class TickingDriver:
    def __init__(self) -> None:
        self.name = "lib:b"
        self.machine_ids = ["b"]
        self.runs = 0

    async def run(self, ctx: DriverContext) -> None:
        self.runs += 1
        ctx.connected()
        i = 0
        while True:
            t = now_ns()
            await ctx.emit([Reading("b", "x", i, None, Quality.GOOD, t, t)])
            i += 1
            await asyncio.sleep(0.01)


class CrashingDriver:
    def __init__(self, error: Exception) -> None:
        self.name = "lib:c"
        self.machine_ids = ["c"]
        self.error = error
        self.runs = 0

    async def run(self, ctx: DriverContext) -> None:
        self.runs += 1
        if self.runs == 1:
            raise self.error
        ctx.connected()
        await asyncio.Event().wait()


def context(driver: object, ingest: IngestQueue, metrics: Metrics, **kw: object) -> SupervisedContext:
    metas = [meta("a"), meta("b"), meta("c")]
    live = StateStage(metas, LiveValues(metas))
    return SupervisedContext(driver, ingest, live, metrics, backoff=Backoff(initial_s=0.01, cap_s=0.01),  # type: ignore[arg-type]
                         **kw)  # type: ignore[arg-type]


async def test_a_failure_in_a_library_thread_restarts_that_driver_alone() -> None:
    ingest, metrics = IngestQueue(100_000), Metrics()
    ingest.bind_loop(asyncio.get_running_loop())
    a, b = ThreadDriver(), TickingDriver()
    ctx_a, ctx_b = context(a, ingest, metrics), context(b, ingest, metrics)
    got: list[Reading] = []

    async def drain() -> None:
        while True:
            for batch in await ingest.get_all():
                got.extend(batch.readings)

    tasks = [asyncio.create_task(x) for x in (supervise(a, ctx_a), supervise(b, ctx_b), drain())]
    try:
        await until(lambda: any(r.machine == "a" for r in got), timeout_s=5.0)
        b_before = sum(r.machine == "b" for r in got)
        await until(lambda: sum(r.machine == "b" for r in got) > b_before + 10, timeout_s=5.0)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert a.runs == 2
    assert a.cleaned_up == 2
    assert [r.value for r in got if r.machine == "a"] == [2]
    assert ctx_a.restarts == 1
    assert metrics.value("driver_restarts_total", driver="lib:a") == 1
    assert b.runs == 1
    assert ctx_b.restarts == 0
    assert metrics.value("driver_restarts_total", driver="lib:b") == 0


@pytest.mark.parametrize(("error", "restarts"), [(KeyError("bug"), 1), (DriverUnavailable("unplugged"), 0)])
async def test_an_exception_in_the_task_restarts_and_only_bugs_count_as_restarts(error: Exception,
                                                                                 restarts: int) -> None:
    ingest, metrics = IngestQueue(1000), Metrics()
    c = CrashingDriver(error)
    ctx = context(c, ingest, metrics)
    task = asyncio.create_task(supervise(c, ctx))
    try:
        await until(lambda: ctx.is_connected, timeout_s=5.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert c.runs == 2
    assert metrics.value("driver_restarts_total", driver="lib:c") == restarts


async def test_a_connected_driver_that_delivers_nothing_is_stalled() -> None:
    clock = [100.0]
    stage = StateStage([meta("a")], LiveValues([meta("a")]))
    ctx = SupervisedContext(ThreadDriver(), IngestQueue(10), stage, Metrics(),  # type: ignore[arg-type]
                            clock=lambda: clock[0], stall_after_s=30.0)
    ctx.bind_loop(asyncio.get_running_loop())
    ctx.connected()
    assert not ctx.stalled()
    clock[0] += 31
    assert ctx.stalled()
    t = now_ns()
    await ctx.emit([Reading("a", "x", 1, None, Quality.GOOD, t, t)])
    assert not ctx.stalled()
    ctx.disconnected("gone")
    clock[0] += 100
    assert not ctx.stalled()  # not connected is not stalled: it is shown as disconnected


@pytest.mark.parametrize("policy", ["receive_time", "reject"])
async def test_source_times_the_clock_cannot_believe_follow_the_policy(policy: str) -> None:
    ingest, metrics = IngestQueue(1000), Metrics()
    ctx = context(ThreadDriver(), ingest, metrics,
                  timestamps=Timestamps(max_ahead_s=300, max_age_s=3600, policy=policy))  # type: ignore[arg-type]
    now = time.time_ns()
    ok = Reading("a", "x", 1, None, Quality.GOOD, now - 10**9, now)
    ahead = Reading("a", "x", 2, None, Quality.GOOD, now + 301 * 10**9, now)
    old = Reading("a", "x", 3, None, Quality.GOOD, now - 3601 * 10**9, now)
    slightly_ahead = Reading("a", "x", 4, None, Quality.GOOD, now + 299 * 10**9, now)
    await ctx.emit([ok, ahead, old, slightly_ahead])
    (batch,) = ingest.take_nowait()
    if policy == "reject":
        assert list(batch.readings) == [ok, slightly_ahead]
    else:
        assert [(r.value, r.source_ns) for r in batch.readings] == [(1, ok.source_ns), (2, now), (3, now),
                                                                    (4, slightly_ahead.source_ns)]
    assert metrics.value("bad_input_total", driver="lib:a", reason="timestamp_ahead") == 1
    assert metrics.value("bad_input_total", driver="lib:a", reason="timestamp_too_old") == 1


def test_the_live_value_is_the_latest_received_reading() -> None:
    live = LiveValues([meta("a")])
    now = now_ns()
    live.apply([Reading("a", "t", 1.0, None, Quality.GOOD, now + 10**18, now)])  # a clock in the far future
    live.apply([Reading("a", "t", 2.0, None, Quality.GOOD, now, now + 1)])
    assert live.get("a").signals["t"].value == 2.0
