"""Running a real in-process gateway in an integration test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.reading import Reading
from gateway.runtime import Runtime
from gateway.state.stage import StateStage


@asynccontextmanager
async def running(rt: Runtime, timeout_s: float = 20.0) -> AsyncIterator[Runtime]:
    """Run `rt` until the block ends; the block starts once it is up and every driver is connected."""
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            await rt.started.wait()
            while not all(c.is_connected for c in rt.contexts):
                await asyncio.sleep(0.05)
        yield rt
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout_s)


def board(metas: Sequence[MachineMeta]) -> StateStage:
    """The live view and the state stage of `metas`, without a pipeline: feed it with `take`."""
    return StateStage(metas, LiveValues(metas))


def take(stage: StateStage, readings: Sequence[Reading]) -> None:
    """What the pipeline and the stage task do with one committed batch."""
    stage.values.apply(readings)
    stage.process([readings])
