"""Pipeline and sink writer: acknowledge only after the commit, hold data while the outbox fails, retry sinks
forever honouring Retry-After, dead-letter rejected readings, keep the live view up to date, and hand committed
readings to the state stage without ever waiting for it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from kit.poll import until

from gateway.backoff import Backoff
from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.pipeline import IngestQueue, Pipeline, SinkWorker
from gateway.reading import Quality, Reading, now_ns
from gateway.sinks.base import Rejected, SinkRetry, WriteResult
from gateway.state.events import Event
from gateway.state.stage import Frame, StateStage

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


async def test_sources_are_acknowledged_only_after_their_readings_are_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    ingest = IngestQueue(1000)
    live = LiveValues([META])
    pipe = Pipeline(ingest, live, Metrics(), outbox, commit_interval_s=0.0)
    on_disk_at_ack: list[int] = []

    def ack() -> None:
        with sqlite3.connect(path) as db:
            on_disk_at_ack.append(db.execute("SELECT coalesce(sum(n), 0) FROM outbox").fetchone()[0])

    task = asyncio.create_task(pipe.run())
    try:
        await ingest.put([reading(0), reading(1)], ack, "mqtt:lab")
        await until(lambda: on_disk_at_ack, timeout_s=5.0)
        assert on_disk_at_ack == [2]
        assert pipe.metrics.total("readings_committed_total") == 2
        assert live.get("fdm-01").signals["nozzle_temp"].value == 201.0
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
    pipe = Pipeline(ingest, LiveValues([META]), metrics, outbox, commit_interval_s=0.0, backoff=NoSleepBackoff())
    acked: list[int] = []
    task = asyncio.create_task(pipe.run())
    try:
        await ingest.put([reading(0)], lambda: acked.append(0), "mqtt:lab")
        await ingest.put([reading(1)], lambda: acked.append(1), "mqtt:lab")
        await until(lambda: metrics.total("outbox_errors_total") >= 3, timeout_s=5.0)
        assert pipe.state == "failing"
        assert "cannot open the outbox" in pipe.last_error
        assert pipe.health()["outbox"]["state"] == "failing"
        assert acked == []
        assert metrics.total("readings_received_total") == 2
        assert metrics.total("readings_committed_total") == 0
        blocker.unlink()
        await until(lambda: acked == [0, 1], timeout_s=5.0)
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
        await until(lambda: outbox.cursors["influxdb"] == seq, timeout_s=5.0)
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
        await until(lambda: outbox.cursors["influxdb"] == 5, timeout_s=5.0)
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
    pipe = Pipeline(ingest, LiveValues([META]), metrics, outbox, commit_interval_s=0.0)
    task = asyncio.create_task(pipe.run())
    try:
        for i in range(40):
            await ingest.put([reading(1000 * i + k) for k in range(100)], None, "mqtt:lab")
            await until(lambda n=i: metrics.total("readings_committed_total") >= 100 * (n + 1), timeout_s=5.0)
        assert outbox.dropped["influxdb"] > 0
        assert outbox.dropped["influxdb"] + outbox.queued_readings("influxdb") == 4000
        assert outbox.bytes <= outbox.max_bytes + max(r.nbytes for r in outbox.rows)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


@pytest.mark.parametrize("arrivals", [1, 30])
async def test_the_state_stage_sees_every_committed_reading(tmp_path: Path, arrivals: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    ingest = IngestQueue(1000)
    values = LiveValues([META])
    stage = StateStage([META], values)
    seen: list[float] = []
    stage.rules = Rules(lambda frames: seen.extend(float(r.value) for f in frames for r in f.readings))  # type: ignore[arg-type]
    pipe = Pipeline(ingest, values, Metrics(), outbox, stage=stage, commit_interval_s=0.0)
    tasks = [asyncio.create_task(pipe.run()), asyncio.create_task(stage.run())]
    try:
        for i in range(arrivals):
            await ingest.put([reading(i)], None, "mqtt:lab")
        await until(lambda: len(seen) == arrivals, timeout_s=2)
        assert seen == [200.0 + i for i in range(arrivals)]  # every value, in order
        assert stage.machine("fdm-01")["signals"]["nozzle_temp"]["value"] == 200.0 + arrivals - 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
        await until(lambda: outbox.cursors["history"] == seq, timeout_s=5.0)
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


class Rules:
    """A rule step that calls `on_frames` with every iteration's frames."""

    def __init__(self, on_frames: object) -> None:
        self.on_frames = on_frames

    def observe(self, frames: Sequence[Frame], now_ns: int) -> None:
        self.on_frames(frames)  # type: ignore[operator]

    def tick(self, machines: object, now_ns: int) -> None:
        return None


def _raise(frames: object) -> None:
    raise RuntimeError("a bug in an alert rule")


async def test_a_failing_alert_rule_never_stops_readings_being_committed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    values = LiveValues([META])
    metrics = Metrics()
    stage = StateStage([META], values, metrics=metrics)
    stage.rules = Rules(_raise)
    ingest = IngestQueue(1000)
    pipe = Pipeline(ingest, values, metrics, outbox, [], stage=stage, commit_interval_s=0.0)
    tasks = [asyncio.create_task(pipe.run()), asyncio.create_task(stage.run())]
    acked: list[int] = []
    try:
        for i in range(3):
            await ingest.put([reading(i)], lambda i=i: acked.append(i), "mqtt:lab")  # type: ignore[misc]
        await until(lambda: acked == [0, 1, 2], timeout_s=5.0)
        assert outbox.last_seq >= 1
        await until(lambda: metrics.total("live_update_errors_total") >= 1, timeout_s=5.0)
        assert metrics.value("live_update_errors_total", driver="mqtt") >= 1
        assert stage.machine("fdm-01")["signals"]["nozzle_temp"]["value"] == 202.0
        # the state stage went on all the same: it followed every reading
        assert stage.state_of("fdm-01").signals["nozzle_temp"].value == 202.0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await outbox.close()


async def test_the_ack_never_waits_for_a_blocked_state_stage(tmp_path: Path) -> None:
    """A rule step that blocks the stage for a long time (here: the stage task never runs at all) delays no
    commit and no acknowledgement; the stage's queue coalesces to the latest value of every signal."""
    outbox = Outbox(tmp_path / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    await outbox.open()
    values = LiveValues([META])
    metrics = Metrics()
    stage = StateStage([META], values, metrics=metrics, capacity=10)  # its task is not started: it is stuck
    ingest = IngestQueue(1000)
    pipe = Pipeline(ingest, values, metrics, outbox, [], stage=stage, commit_interval_s=0.0)
    task = asyncio.create_task(pipe.run())
    acked: list[int] = []
    try:
        for i in range(50):  # one commit each
            await ingest.put([reading(i)], lambda i=i: acked.append(i), "mqtt:lab")  # type: ignore[misc]
            await until(lambda i=i: len(acked) == i + 1, timeout_s=5.0)  # type: ignore[misc]
        assert metrics.total("readings_committed_total") == 50
        assert values.get("fdm-01").signals["nozzle_temp"].value == 249.0  # the live view is never behind
        assert stage.queued() <= 10 + 1
        assert metrics.total("state_coalesced_readings_total") > 0
        seen: list[float] = []
        stage.rules = Rules(lambda frames: seen.extend(float(r.value) for f in frames for r in f.readings))
        stage.process(stage._take())  # the stage catches up: the latest value is always there
        assert seen[-1] == 249.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


def test_a_crossing_inside_one_batch_is_seen_by_the_rules() -> None:
    """Many driver batches are processed in one iteration: a value that repeats starts a new frame, so the rules
    see 640 and then 601, not only the last value."""
    values = LiveValues([META])
    stage = StateStage([META], values)
    frames: list[Frame] = []
    stage.rules = Rules(frames.extend)
    batch = [Reading("fdm-01", "nozzle_temp", v, "degC", Quality.GOOD, i, i) for i, v in
             enumerate([600.0, 640.0, 601.0])]
    batch.insert(1, Reading("fdm-01", "bed_temp", 60.0, "degC", Quality.GOOD, 0, 0))
    values.apply(batch)
    stage.process([batch[:2], batch[2:]])
    assert [(f.view.signals["nozzle_temp"].value, [r.signal for r in f.readings]) for f in frames] == [
        (600.0, ["nozzle_temp", "bed_temp"]), (640.0, ["nozzle_temp"]), (601.0, ["nozzle_temp"])]


def test_a_tick_before_the_stage_follows_the_first_readings_announces_no_state() -> None:
    """The pipeline puts readings into the live view before the stage follows them; a tick in between (at start-up,
    when the stage knows no signal yet) keeps the machine offline instead of calling it idle by default for a
    moment — after a gateway restart that false idle made billing split a running job in two."""
    values = LiveValues([META])
    stage = StateStage([META], values)
    events: list[Event] = []
    stage.bus.subscribe(events.append)
    batch = [Reading("fdm-01", "state", "printing", None, Quality.GOOD, now_ns(), now_ns())]
    values.apply(batch)
    stage.tick()
    assert stage.machine("fdm-01")["state"] == "offline"
    stage.process([batch])
    assert stage.machine("fdm-01")["state"] == "running"
    assert [(e.data["from"], e.data["to"]) for e in events if e.type == "state"] == [("offline", "running")]


async def test_one_machine_message_per_machine_and_iteration() -> None:
    values = LiveValues([META])
    stage = StateStage([META], values)
    q = stage.fanout.subscribe()
    batches = [[reading(i)] for i in range(20)]
    for b in batches:
        values.apply(b)
    stage.process(batches)
    msgs = [q.get_nowait() for _ in range(q.qsize())]
    machine_msgs = [m for m in msgs if m["type"] == "machine"]
    assert len(machine_msgs) == 1
    assert machine_msgs[0]["machine"]["signals"]["nozzle_temp"]["value"] == 219.0
