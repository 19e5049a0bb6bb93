"""Pipeline and sink writer: acknowledge only after the commit, hold data while the outbox fails, retry sinks
forever honouring Retry-After, dead-letter rejected readings, and keep the live hub up to date."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.backoff import Backoff
from gateway.live import LiveHub
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.pipeline import IngestQueue, Pipeline, SinkWorker
from gateway.reading import Quality, Reading
from gateway.sinks.base import Rejected, SinkRetry, WriteResult

META = MachineMeta(id="fdm-01", name="Printer", kind="printer", driver="mqtt", site="s")


def reading(i: int) -> Reading:
    return Reading("fdm-01", "nozzle_temp", 200.0 + i, "degC", Quality.GOOD, 1_000_000 + i, 2_000_000 + i)


class FakeSink:
    """Fails the first `failures` writes with SinkRetry(retry_after_s); rejects readings with a value of 666."""

    name = "influxdb"

    def __init__(self, failures: int = 0, retry_after_s: float | None = None) -> None:
        self.failures = failures
        self.retry_after_s = retry_after_s
        self.attempts = 0
        self.written: list[Reading] = []

    async def open(self) -> None:
        return None

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise SinkRetry("InfluxDB answered 503", self.retry_after_s)
        bad = [r for r in readings if r.value == 666.0]
        good = [r for r in readings if r.value != 666.0]
        self.written += good
        return WriteResult(len(good), [Rejected((r,), f"line {r.value}", "field type conflict") for r in bad])

    async def close(self) -> None:
        return None


class NoSleepBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(initial_s=0.001, cap_s=0.001)
        self.delays: list[float] = []

    def next(self) -> float:
        self.delays.append(super().next())
        return 0.0


async def until(pred: object, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_sources_are_acknowledged_only_after_their_readings_are_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    ingest = IngestQueue(1000)
    live = LiveHub([META])
    pipe = Pipeline(ingest, live, Metrics(), outbox, commit_interval_s=0.0)
    on_disk_at_ack: list[int] = []

    def ack() -> None:
        with sqlite3.connect(path) as db:
            on_disk_at_ack.append(db.execute("SELECT coalesce(sum(n), 0) FROM outbox").fetchone()[0])

    task = asyncio.create_task(pipe.run())
    try:
        await ingest.put([reading(0), reading(1)], ack, "mqtt:lab")
        await until(lambda: on_disk_at_ack)
        assert on_disk_at_ack == [2]
        assert pipe.metrics.total("readings_committed_total") == 2
        await until(lambda: live.machine("fdm-01")["signals"].get("nozzle_temp") is not None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


async def test_a_failing_outbox_holds_readings_and_acks_until_it_works_again(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")
    outbox = Outbox(blocker / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    ingest = IngestQueue(1000)
    metrics = Metrics()
    pipe = Pipeline(ingest, LiveHub([META]), metrics, outbox, commit_interval_s=0.0, backoff=NoSleepBackoff())
    acked: list[int] = []
    task = asyncio.create_task(pipe.run())
    try:
        await ingest.put([reading(0)], lambda: acked.append(0), "mqtt:lab")
        await ingest.put([reading(1)], lambda: acked.append(1), "mqtt:lab")
        await until(lambda: metrics.total("outbox_errors_total") >= 3)
        assert pipe.state == "failing"
        assert "cannot open the outbox" in pipe.last_error
        assert pipe.health()["outbox"]["state"] == "failing"
        assert acked == []
        assert metrics.total("readings_received_total") == 2
        assert metrics.total("readings_committed_total") == 0
        blocker.unlink()
        await until(lambda: acked == [0, 1])
        assert pipe.state == "ok"
        assert metrics.total("readings_committed_total") == 2
        assert outbox.queued_readings("influxdb") == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


async def test_sink_worker_retries_honouring_retry_after_and_dead_letters_bad_readings(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    sink = FakeSink(failures=2, retry_after_s=0.05)
    metrics = Metrics()
    backoff = NoSleepBackoff()
    worker = SinkWorker(sink, outbox, metrics, batch_size=100, flush_interval_s=0.01, memory_readings=1000,
                        backoff=backoff)
    batch = [reading(0), Reading("fdm-01", "nozzle_temp", 666.0, "degC", Quality.GOOD, 5, 5), reading(2)]
    seq = await outbox.append(batch)
    worker.committed(seq, batch)
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await until(lambda: outbox.cursors["influxdb"] == seq)
        assert loop.time() - t0 >= 0.1  # two Retry-After waits of 0.05 s, although the backoff said 0
        assert sink.attempts == 3
        assert sink.written == [reading(0), reading(2)]
        assert worker.state == "ok"
        assert metrics.total("sink_retries_total") == 2
        assert metrics.total("readings_written_total") == 2
        assert metrics.value("readings_dead_lettered_total", sink="influxdb") == 1
        (dead,) = await outbox.dead_letters("influxdb")
        assert dead["reason"] == "field type conflict"
        assert outbox.queued_readings("influxdb") == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


async def test_sink_worker_catches_up_from_disk_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    first = Outbox(path, ["influxdb"], max_bytes=1 << 30)
    await first.open()
    for i in range(5):
        await first.append([reading(i)])
    await first.close()
    outbox = Outbox(path, ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    sink = FakeSink()
    worker = SinkWorker(sink, outbox, Metrics(), batch_size=2, flush_interval_s=0.01, memory_readings=1000)
    worker._has_data.set()
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: outbox.cursors["influxdb"] == 5)
        assert sink.written == [reading(i) for i in range(5)]  # oldest first, nothing twice
        assert sink.attempts == 3  # batches of at most 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


async def test_drop_oldest_policy_makes_room_and_counts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 16, policy="drop_oldest")
    await outbox.open()
    ingest = IngestQueue(100_000)
    metrics = Metrics()
    pipe = Pipeline(ingest, LiveHub([META]), metrics, outbox, commit_interval_s=0.0)
    task = asyncio.create_task(pipe.run())
    try:
        for i in range(40):
            await ingest.put([reading(1000 * i + k) for k in range(100)], None, "mqtt:lab")
            await until(lambda n=i: metrics.total("readings_committed_total") >= 100 * (n + 1))
        assert outbox.dropped["influxdb"] > 0
        assert outbox.dropped["influxdb"] + outbox.queued_readings("influxdb") == 4000
        assert outbox.bytes <= outbox.max_bytes + max(r.nbytes for r in outbox.rows)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


@pytest.mark.parametrize("arrivals", [1, 30])
async def test_the_live_hub_sees_every_machine_update(tmp_path: Path, arrivals: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    ingest = IngestQueue(1000)
    live = LiveHub([META])
    pipe = Pipeline(ingest, live, Metrics(), outbox, commit_interval_s=0.0)
    task = asyncio.create_task(pipe.run())
    try:
        for i in range(arrivals):
            await ingest.put([reading(i)], None, "mqtt:lab")
        await until(lambda: live.machine("fdm-01")["signals"].get("nozzle_temp", {}).get("value")
                    == 200.0 + arrivals - 1, timeout_s=2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


class PoisonedSink(FakeSink):
    """Raises an unexpected error (not SinkRetry) on any batch holding a reading with the value 13, as a sink
    whose library chokes on one value does; meanwhile it is briefly unreachable once."""

    name = "history"

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        self.attempts += 1
        if self.attempts == 3:
            raise SinkRetry("locked for a moment")
        if any(r.value == 13.0 for r in readings):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        self.written += readings
        return WriteResult(len(readings))


async def test_a_poison_reading_goes_to_dead_letters_and_the_rest_of_its_batch_lands(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, ["history"], max_bytes=1 << 30)
    await outbox.open()
    sink = PoisonedSink()
    metrics = Metrics()
    worker = SinkWorker(sink, outbox, metrics, batch_size=100, flush_interval_s=0.01, memory_readings=1000,
                        backoff=NoSleepBackoff())
    poison = Reading("fdm-01", "nozzle_temp", 13.0, "degC", Quality.GOOD, 7, 7)
    batch = [reading(i) for i in range(6)] + [poison] + [reading(i) for i in range(6, 11)]
    seq = await outbox.append(batch)
    worker.committed(seq, batch)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: outbox.cursors["history"] == seq)
        assert sorted(r.value for r in sink.written) == sorted(r.value for r in batch if r is not poison)
        assert len(sink.written) == 11  # nothing twice, even across the transient failure
        (dead,) = await outbox.dead_letters("history")
        assert dead["reason"] == "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0: " \
                                 "surrogates not allowed"
        assert sink.attempts < 12  # isolated by halving, not retried forever
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    # a restart finds nothing left to write: the poison does not come back
    again = Outbox(path, ["history"], max_bytes=1 << 30)
    await again.open()
    try:
        assert again.queued_readings("history") == 0
    finally:
        await again.close()


async def test_a_failing_live_listener_never_stops_readings_being_committed(tmp_path: Path) -> None:
    class Broken:
        def machine_updated(self, machine: object, readings: object, now_ns: int) -> None:
            raise RuntimeError("a bug in an alert rule")

        def ticked(self, machines: object, now_ns: int) -> None:
            return None

        def event(self, event: object) -> None:
            return None

    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    live = LiveHub([META])
    live.add_listener(Broken())  # type: ignore[arg-type]
    ingest = IngestQueue(1000)
    metrics = Metrics()
    pipe = Pipeline(ingest, live, metrics, outbox, [], commit_interval_s=0.0)
    task = asyncio.create_task(pipe.run())
    acked: list[int] = []
    try:
        for i in range(3):
            await ingest.put([reading(i)], lambda i=i: acked.append(i), "mqtt:lab")  # type: ignore[misc]
        await until(lambda: acked == [0, 1, 2])
        assert outbox.last_seq >= 1
        assert metrics.total("live_update_errors_total") == 3
        assert live.machine("fdm-01")["signals"]["nozzle_temp"]["value"] == 202.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
