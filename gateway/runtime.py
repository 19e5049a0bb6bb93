"""Builds the running gateway from a validated site config and runs it until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drivers.mqtt.config import MqttBroker
from gateway import __version__
from gateway.api.app import create_app, serve
from gateway.api.context import ApiContext, Role
from gateway.config.site import SiteConfig
from gateway.datadir import private_dir
from gateway.driver import Driver, DriverEnv, DriverSpec
from gateway.embedded_broker import EmbeddedBroker, rules_for
from gateway.errors import ConfigError, SinkConfigError
from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.outbox import Outbox, OutboxError
from gateway.pipeline import IngestQueue, Pipeline, SinkWorker
from gateway.reading import Value
from gateway.self_metrics import SelfMetricsWriter
from gateway.services import Services
from gateway.sinks.base import Sink, SinkRetry
from gateway.sinks.history import LocalHistory
from gateway.sinks.influx import InfluxSink
from gateway.state.stage import StateStage
from gateway.supervisor import SupervisedContext, backoff_of, supervise
from gateway.watchdog import LoopWatchdog

log = logging.getLogger(__name__)

TICK_S = 1.0
PURGE_EVERY_S = 3600.0


def machine_metas(cfg: SiteConfig) -> list[MachineMeta]:
    return [
        MachineMeta(id=m.id, name=m.name, kind=m.kind, driver=m.driver, site=cfg.site.id, lab=m.lab,
                    expected_interval_s=m.expected_interval_s)
        for m in cfg.machines
    ]


def describe_metrics(metrics: Metrics) -> None:
    for name, kind, text in (
        ("readings_received_total", "counter", "Readings received from drivers."),
        ("readings_committed_total", "counter", "Readings committed to the outbox (sources acknowledged)."),
        ("readings_written_total", "counter", "Readings confirmed written by a sink."),
        ("readings_dead_lettered_total", "counter", "Readings a sink refused as malformed, kept in dead_letters."),
        ("readings_dropped_total", "counter", "Queued readings dropped by the drop_oldest policy."),
        ("sink_oldest_queued_seconds", "gauge", "Age of the oldest reading a sink has not confirmed."),
        ("outbox_bytes", "gauge", "Bytes queued in the outbox on disk."),
        ("outbox_full_total", "counter", "Times the outbox was full and back-pressure started."),
        ("outbox_errors_total", "counter", "Failed outbox commits (disk full, not writable); retried."),
        ("bad_input_total", "counter", "Messages or values skipped as bad input, by reason."),
        ("driver_connected", "gauge", "1 while the driver is connected."),
        ("driver_reconnects_total", "counter", "Recoveries after a lost connection."),
        ("driver_stalled", "gauge", "1 while the driver is connected but delivers nothing."),
        ("driver_restarts_total", "counter", "Restarts of a driver after its code failed (task, thread, callback)."),
        ("sink_queue_readings", "gauge", "Readings waiting for a sink."),
        ("ingest_queue_readings", "gauge", "Readings waiting between drivers and sinks."),
        ("sink_retries_total", "counter", "Batches a sink failed to take and that are retried."),
        ("live_update_errors_total", "counter", "State stage iterations the state engine, alert rules or the "
         "business store failed on, by driver (the readings were stored all the same)."),
        ("state_coalesced_readings_total", "counter", "Readings the state stage skipped while it was behind (it "
         "kept the latest value of every signal)."),
        ("sink_batch_seconds_sum", "counter", "Time spent writing batches that succeeded."),
        ("sink_batch_seconds_count", "counter", "Batches written."),
    ):
        metrics.describe(name, kind, text)


class Runtime:
    """One gateway: drivers, pipeline, sinks, live view, state stage, services and the HTTP API."""

    def __init__(self, cfg: SiteConfig, specs: Mapping[str, DriverSpec[Any]], *, data_dir: Path | None = None,
                 tokens: Mapping[str, tuple[str, Role]] | None = None, serve_api: bool = True) -> None:
        self.cfg = cfg
        self.specs = specs
        self.data_dir = Path(data_dir or cfg.storage.data_dir)
        self.metrics = Metrics()
        describe_metrics(self.metrics)
        metas = machine_metas(cfg)
        self.values = LiveValues(metas, stale_min_s=cfg.state.stale_min_s)
        self.stage = StateStage(metas, self.values, section=cfg.state, metrics=self.metrics,
                                capacity=cfg.storage.queue_size)
        self.services: Services | None = None  # alerts, maintenance, OEE, events: built in run() (broker ports)
        self.services_error = ""
        self.tokens: dict[str, tuple[str, Role]] = {t.token: (t.name, t.role) for t in cfg.api.tokens}
        self.tokens.update(tokens or {})
        self.serve_api = serve_api
        self.sinks: list[Sink] = []
        self.history: LocalHistory | InfluxSink | None = None
        self.pipeline: Pipeline | None = None
        self.outbox: Outbox | None = None
        self.contexts: list[SupervisedContext] = []
        self.brokers: dict[str, EmbeddedBroker] = {}
        self.api_port: int | None = None
        self.started = asyncio.Event()
        self.started_at = time.time()
        self.on_started: list[Callable[[Runtime], None]] = []
        self.watchdog = LoopWatchdog(self.metrics, threshold_s=cfg.health.loop_lag_threshold_s,
                                     for_s=cfg.health.loop_lag_for_s)

    # --- start-up ------------------------------------------------------------------------------------------
    async def _start_brokers(self) -> None:
        updated: list[MqttBroker] = []
        for b in self.cfg.mqtt.brokers:
            if b.embedded:
                broker = EmbeddedBroker(b.host, b.port, rules=rules_for(self.cfg, b))
                port = await broker.start()
                self.brokers[b.id] = broker
                gw = broker.rules.gateway  # the gateway's own clients connect with these
                b = b.model_copy(update={"port": port, "username": gw.username, "password": gw.password})
            updated.append(b)
        mqtt = self.cfg.mqtt.model_copy(update={"brokers": updated})
        self.cfg = self.cfg.model_copy(update={"mqtt": mqtt})

    def devices_cfg(self) -> SiteConfig:
        """The running config as the machines see it: embedded brokers with the devices' credentials (for the
        simulators of `kartech demo`), not the gateway's."""
        brokers = [b.model_copy(update={"username": self.brokers[b.id].rules.devices.username,
                                        "password": self.brokers[b.id].rules.devices.password})
                   if b.id in self.brokers else b for b in self.cfg.mqtt.brokers]
        return self.cfg.model_copy(update={"mqtt": self.cfg.mqtt.model_copy(update={"brokers": brokers})})

    async def _open_sinks(self) -> None:
        metas = {m.id: m for m in machine_metas(self.cfg)}
        storage = self.cfg.storage
        if storage.local_history.enabled:
            hist = LocalHistory(self.data_dir / "history.sqlite", metas, self.metrics,
                                retention_days=storage.local_history.retention_days)
            self.sinks.append(hist)
            self.history = hist
        if storage.influxdb is not None:
            influx = InfluxSink(storage.influxdb, metas, self.metrics)
            self.sinks.append(influx)
            if self.history is None:
                self.history = influx
        for sink in self.sinks:
            try:
                await sink.open()
            except SinkConfigError as err:
                raise ConfigError(f"storage: {sink.name}: {err}") from err
            except SinkRetry as err:
                log.warning("sink %s not reachable at start-up (%s); readings are kept and retried", sink.name, err)

    def _drivers(self) -> list[Driver]:
        """Each driver built from its own machines and a narrow environment, never the whole site config."""
        out: list[Driver] = []
        for name, spec in self.specs.items():
            machines = [m for m in self.cfg.machines if m.driver == name]
            if machines:
                state_dir = self.data_dir / "drivers" / name
                try:
                    private_dir(state_dir)
                except OSError as err:
                    log.error("driver state directory %s: %s", state_dir, err)
                env = DriverEnv(site_id=self.cfg.site.id, timezone=self.cfg.site.timezone, state_dir=state_dir,
                                settings=self.cfg.section(spec.section))
                out.extend(spec.build(machines, env))
        return out

    def health(self) -> dict[str, Any]:
        pipe = self.pipeline.health() if self.pipeline else {"sinks": {}, "outbox": {}}
        sinks = pipe["sinks"]
        drivers = {c.name: {"connected": c.is_connected and not c.stalled(), "stalled": c.stalled(),
                            "restarts": c.restarts, "last_error": c.last_error}
                   for c in self.contexts}
        reasons = [f"driver {n}: {'stalled: connected but delivering nothing' if d['stalled'] else 'not connected'}"
                   for n, d in drivers.items() if not d["connected"]]
        reasons += [f"sink {n}: failing" for n, s in sinks.items() if s["state"] == "failing"]
        if pipe["outbox"].get("state", "ok") != "ok":
            reasons.append(f"outbox: {pipe['outbox']['state']}")
        if self.services_error:
            reasons.append("operations: business store unavailable")
        if self.watchdog.degraded_reason:
            reasons.append(self.watchdog.degraded_reason)
        return {
            "status": "degraded" if reasons else "ok",
            **({"reasons": reasons} if reasons else {}),
            "event_loop_lag_ms": round(self.watchdog.lag_s() * 1000, 1),
            "version": __version__,
            "site": self.cfg.site.id,
            "uptime_s": round(time.time() - self.started_at, 1),
            "drivers": drivers,
            "sinks": sinks,
            "outbox": pipe["outbox"],
            **({"operations_error": self.services_error} if self.services_error else {}),
            "ingest_queued": pipe.get("ingest_queued", 0),
            "machines": len(self.cfg.machines),
        }

    async def _history(self, machine: str, signal: str, start_ns: int, end_ns: int,
                       limit: int) -> list[tuple[int, Value, str]]:
        assert self.history is not None
        return await self.history.query_history(machine, signal, start_ns, end_ns, limit)

    # --- run -----------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self._start_brokers()
        tasks: list[asyncio.Task[Any]] = []
        try:
            try:
                private_dir(self.data_dir)  # readable by the gateway's user only
            except OSError as err:
                log.error("data directory %s: %s; the stores in it report their own errors", self.data_dir, err)
            await self._open_sinks()
            storage = self.cfg.storage
            ingest = IngestQueue(storage.queue_size)
            self.metrics.gauge_fn("ingest_queue_readings", lambda: float(len(ingest)))
            ob = storage.outbox
            self.outbox = Outbox(self.data_dir / "outbox.sqlite", [s.name for s in self.sinks], max_bytes=ob.max_bytes,
                                 policy=ob.when_full, durability=ob.durability)
            try:
                await self.outbox.open()
            except OutboxError as err:
                log.error("%s; the gateway runs degraded and keeps trying", err)
            self.metrics.gauge_fn("outbox_bytes", lambda: float(self.outbox.bytes if self.outbox else 0))
            influx = storage.influxdb
            workers = [
                SinkWorker(
                    s, self.outbox, self.metrics,
                    batch_size=influx.batch_size if isinstance(s, InfluxSink) and influx else 5000,
                    flush_interval_s=influx.flush_interval_s if isinstance(s, InfluxSink) and influx else 0.5,
                    memory_readings=storage.queue_size,
                )
                for s in self.sinks
            ]
            self.pipeline = Pipeline(ingest, self.values, self.metrics, self.outbox, workers, stage=self.stage,
                                     commit_interval_s=ob.commit_interval_s)
            ingest.bind_loop(asyncio.get_running_loop())
            tasks.append(asyncio.create_task(self.pipeline.run(), name="pipeline"))
            tasks.append(asyncio.create_task(self.stage.run(), name="state"))
            tasks += [asyncio.create_task(w.run(), name=f"sink:{w.sink.name}") for w in workers]
            tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
            try:
                self.services = Services(self.cfg, self.stage, self.data_dir, metas=machine_metas(self.cfg))
            except (OSError, sqlite3.Error) as err:
                # telemetry keeps flowing; alerts, maintenance and OEE answer 503 and health says why
                self.services_error = f"business store in {self.data_dir}: {err}"
                log.error("alerts, maintenance and OEE are off: %s", self.services_error)
            else:
                tasks.append(asyncio.create_task(self.services.run(), name="operations"))
            critical = list(tasks)  # these never end by themselves; if one fails, the gateway stops loudly
            if storage.influxdb is not None:  # the gateway's own health, for the Grafana "Gateway health" dashboard
                writer = SelfMetricsWriter(self.metrics, storage.influxdb, site=self.cfg.site.id)
                tasks.append(asyncio.create_task(writer.run(), name="self-metrics"))
            tasks.append(asyncio.create_task(self.watchdog.run(), name="loop-watchdog"))
            expected = {m.id: m.expected_interval_s for m in self.cfg.machines}
            for driver in self._drivers():
                quiet_s = min((expected[mid] for mid in driver.machine_ids if mid in expected), default=None)
                ctx = SupervisedContext(driver, ingest, self.stage, self.metrics, backoff=backoff_of(driver.retry),
                                        timestamps=self.cfg.timestamps,
                                        stall_after_s=None if quiet_s is None else
                                        max(3 * quiet_s, self.cfg.state.stale_min_s))
                self.contexts.append(ctx)
                self.metrics.gauge_fn("driver_stalled", functools.partial(_stalled, ctx), driver=ctx.name)
                tasks.append(asyncio.create_task(supervise(driver, ctx), name=f"driver:{driver.name}"))
            if self.serve_api:
                api_ready = asyncio.Event()
                app = create_app(ApiContext(
                    site_id=self.cfg.site.id, site_name=self.cfg.site.name, machines=self.stage, metrics=self.metrics,
                    tokens=self.tokens, history=self._history if self.history else None, health=self.health,
                    version=__version__, services=self.services, max_body_bytes=self.cfg.api.max_body_bytes,
                    partners={t.token: t.partner for t in self.cfg.api.tokens if t.partner is not None},
                ))
                server = asyncio.create_task(serve(app, self.cfg.api.host, self.cfg.api.port, api_ready), name="api")
                tasks.append(server)
                critical.append(server)
                await _first(api_ready.wait(), server)
                self.api_port = app.state.bound_port
            self.started.set()
            for cb in self.on_started:
                cb(self)
            await _first(stop.wait(), *critical)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            if self.outbox is not None:
                with contextlib.suppress(Exception):
                    await self.outbox.close()
            if self.services is not None:
                with contextlib.suppress(Exception):
                    await self.services.close()
            for broker in self.brokers.values():
                with contextlib.suppress(Exception):
                    await broker.stop()

    async def _housekeeping(self) -> None:
        last_purge = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            self.stage.tick()
            if self.services is not None:
                self.services.tick()
            if isinstance(self.history, LocalHistory) and time.monotonic() - last_purge > PURGE_EVERY_S:
                last_purge = time.monotonic()
                await self.history.purge(time.time_ns())


def _stalled(ctx: SupervisedContext) -> float:
    return float(ctx.stalled())


async def _first(*aws: Any) -> None:
    """Wait until the first of these finishes; re-raise if it failed. Only waiters created here are cancelled."""
    created: list[asyncio.Future[Any]] = []
    futs: list[asyncio.Future[Any]] = []
    for a in aws:
        if isinstance(a, asyncio.Future):
            futs.append(a)
        else:
            f = asyncio.ensure_future(a)
            created.append(f)
            futs.append(f)
    try:
        done, _ = await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in created:
            if not f.done():
                f.cancel()
    for f in done:
        if not f.cancelled() and (exc := f.exception()) is not None:
            raise exc
