"""Running a real in-process gateway in an integration test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.runtime import Runtime


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
