"""One driver under the real supervisor, for driver tests against real devices (asyncua servers, ptys, Mosquitto).

`supervised(driver, metas)` runs `supervise(driver, ctx)` with the gateway's own `SupervisedContext`, a real
`IngestQueue` and the real live view and state stage (`kit.ops.Lab`); every batch the driver emits is collected in
`readings` and applied to the live view as the pipeline would. The harness exposes the machine state, the
bad-input counters and `wait_for`. A test that needs the driver's own exception builds a `DriverHarness` and awaits
`driver.run(harness.ctx)` itself, without the supervisor's retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from gateway.backoff import Backoff
from gateway.driver import Driver
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.pipeline import IngestQueue
from gateway.reading import Reading
from gateway.supervisor import SupervisedContext, supervise
from kit.ops import Lab
from kit.poll import until


class DriverHarness:
    def __init__(self, driver: Driver, metas: Sequence[MachineMeta], *, backoff: Backoff | None = None) -> None:
        self.driver = driver
        self.metrics = Metrics()
        self.lab = Lab(metas)
        self.ingest = IngestQueue(100_000)
        self.ctx = SupervisedContext(driver, self.ingest, self.lab.stage, self.metrics, backoff=backoff)
        self.readings: list[Reading] = []

    async def _pump(self) -> None:
        while True:
            for batch in await self.ingest.get_all():
                self.readings.extend(batch.readings)
                self.lab.update(batch.readings)

    async def wait_for(self, what: str, pred: Callable[[], object], timeout_s: float = 15.0) -> float:
        """Wait until `pred()` holds (kit.poll.until); returns the seconds it took."""
        start = time.monotonic()
        await until(pred, what, timeout_s)
        return time.monotonic() - start

    def values(self, signal: str, since: int = 0) -> list[object]:
        """Values of `signal` among the readings collected from index `since` on."""
        return [r.value for r in self.readings[since:] if r.signal == signal]

    def of(self, machine: str, signal: str, since_ns: int = 0) -> list[Reading]:
        """Readings of one machine's signal received at or after `since_ns`."""
        return [r for r in self.readings if r.machine == machine and r.signal == signal and r.receive_ns >= since_ns]

    def state(self, machine: str | None = None) -> str:
        """The state stage's state of `machine` (the only machine when there is one)."""
        return str(self.lab.machine(machine or self.ctx.machine_ids[0])["state"])

    def bad(self, reason: str) -> float:
        """How many inputs the driver reported as bad for `reason` (bad_input_total)."""
        return self.metrics.value("bad_input_total", driver=self.driver.name, reason=reason)


@asynccontextmanager
async def supervised(driver: Driver, metas: Sequence[MachineMeta], *,
                     backoff: Backoff | None = None) -> AsyncIterator[DriverHarness]:
    """Run `driver` under the supervisor until the block ends."""
    h = DriverHarness(driver, metas, backoff=backoff)
    h.ingest.bind_loop(asyncio.get_running_loop())
    tasks = [asyncio.create_task(h._pump()), asyncio.create_task(supervise(h.driver, h.ctx))]
    try:
        yield h
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
