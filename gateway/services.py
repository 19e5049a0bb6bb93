"""The operations services: the business store plus everything that runs on states and events — alert engine and
book, notifications, maintenance, OEE, the usage ledger (gateway/billing/service.py), event export to InfluxDB
and retained MQTT state topics.

The runtime builds one `Services` next to the state stage, calls `run()` as a task, `tick()` every second and
`close()` at the end; the HTTP API reaches it through `ApiContext.services`. It plugs into the stage in three
places: the event bus persists through `_persist` (events and production, in the stage's transaction), the alert
engine is the stage's rule step, and the ledger and the state topics listen to the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from gateway.alerts.book import AlertBook
from gateway.alerts.defaults import effective_rules
from gateway.alerts.engine import AlertEngine
from gateway.alerts.rules import compile_rules
from gateway.billing.catalog import Catalog
from gateway.billing.export import UsageExporter
from gateway.billing.service import UsageLedger
from gateway.config.billing import BillingSection
from gateway.config.references import cross_checks
from gateway.config.site import SiteConfig
from gateway.errors import ConfigError
from gateway.machines import MachineMeta
from gateway.maintenance.service import Maintenance
from gateway.notify.channels import Sender, build_senders
from gateway.notify.dispatcher import Notifier
from gateway.oee import oee_report, shift_windows
from gateway.state.events import Event
from gateway.state.influx import EventExporter, InfluxWriter, MaintenanceExporter, OeeExporter
from gateway.state.stage import StateStage
from gateway.state.topics import StatePublisher
from gateway.store import Store

log = logging.getLogger(__name__)

NS = 1_000_000_000
MINUTE_NS = 60 * NS
SAVE_EVERY_NS = 10 * NS
MAINTENANCE_CHECK_NS = 10 * NS


def check_references(cfg: SiteConfig) -> None:
    problems = cross_checks(cfg)
    if problems:
        lines = [f"  {'.'.join(str(p) for p in loc)}: {msg}" for loc, _, msg in problems]
        raise ConfigError("Gateway not started: the operations sections name things that do not exist:\n"
                          + "\n".join(lines))


class Services:
    def __init__(self, cfg: SiteConfig, stage: StateStage, data_dir: Path, *, metas: Sequence[MachineMeta],
                 clock: Callable[[], int] | None = None, http_client: httpx.AsyncClient | None = None,
                 senders: dict[str, Sender] | None = None) -> None:
        check_references(cfg)
        self.cfg = cfg
        self.stage = stage
        self.clock = clock or stage.clock
        self.metas = {m.id: m for m in metas}
        self.store = Store(Path(data_dir) / "business.sqlite")
        self._own_client = http_client is None
        self.http = http_client or httpx.AsyncClient()
        bus = stage.bus
        bus.persist = self._persist
        bus.transaction = self.store.transaction
        for mid, track in stage.engine.tracks.items():
            saved = {r["name"]: r["value"] for r in self.store.query(
                "SELECT name, value FROM counters WHERE machine = ?", (mid,))}
            track.usage.restore(saved)
        stage.restore_maintenance(self.store.get_json("maintenance_mode") or [])
        self.catalog = Catalog(self.store, cfg)
        self.usage = UsageLedger(self.store, self.catalog.at(self.clock()), [m.id for m in metas], self.clock,
                                 emit=bus.emit, energy=self._energy)
        self.notifier = Notifier(
            self.store,
            senders if senders is not None else build_senders(list(cfg.notifications.channels), cfg.mqtt.brokers,
                                                              cfg.site.id, self.http),
            cfg.notifications.retry, clock=self.clock)
        self.book = AlertBook(self.store, site_id=cfg.site.id, channels=cfg.notifications.channels,
                              notify_window_s=cfg.alerts.notify_window_s, emit=bus.emit,
                              publish=stage.fanout.publish, wake=self.notifier.wake)
        self.alerts = AlertEngine(compile_rules(effective_rules(cfg.alerts)), self.book, metas)
        stage.rules = self.alerts
        self.maintenance = Maintenance(self.store, cfg.maintenance, metas, counters=stage.engine.counters,
                                       now_ns=self.clock(), emit=bus.emit, book=self.book)
        self.exporter: EventExporter | None = None
        self.oee_exporter: OeeExporter | None = None
        self.maintenance_exporter: MaintenanceExporter | None = None
        self.usage_exporter: UsageExporter | None = None
        if cfg.storage.influxdb is not None:
            writer = InfluxWriter(cfg.storage.influxdb, self.http)
            self.exporter = EventExporter(self.store, writer, self.metas, cfg.site.id, cfg.site.timezone)
            self.usage_exporter = UsageExporter(self.store, writer, self.metas, cfg.site.id, cfg.site.timezone)
            self.maintenance_exporter = MaintenanceExporter(writer, self.metas, cfg.site.id, self.maintenance.tasks,
                                                            self.clock)
            self.oee_exporter = OeeExporter(self.store, writer, self.metas, cfg.site.id, self.oee, self.clock,
                                            first_ns=self.clock())
        self.topics: StatePublisher | None = None
        if cfg.state.mqtt is not None:
            broker = next(b for b in cfg.mqtt.brokers if b.id == cfg.state.mqtt.broker)
            self.topics = StatePublisher(cfg.state.mqtt, broker, cfg.site.id)
        self._saved_ns = 0
        self._checked_ns = 0
        bus.subscribe(self._on_event)

    # --- store writers --------------------------------------------------------------------------------------
    def _persist(self, events: Sequence[Event]) -> list[Event]:
        """Write a batch of events and the production made meanwhile (the caller holds the transaction); the
        events with their ids."""
        out = []
        with self.store.transaction() as db:
            for e in events:
                cur = db.execute("INSERT INTO events (ts_ns, machine, type, data) VALUES (?, ?, ?, ?)",
                                 (e.ts_ns, e.machine, e.type, json.dumps(e.data, ensure_ascii=False)))
                out.append(Event(e.ts_ns, e.machine, e.type, e.data, cur.lastrowid))
            for machine, p in self.stage.engine.take_production():
                db.execute(
                    "INSERT INTO production (machine, minute_ns, total, good) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (machine, minute_ns) DO UPDATE SET total = total + excluded.total, "
                    "good = CASE WHEN excluded.good IS NULL THEN good ELSE COALESCE(good, 0) + excluded.good END",
                    (machine, p.ts_ns - p.ts_ns % MINUTE_NS, p.total, p.good))
            if any(e.type == "maintenance_mode" for e in events):
                db.execute("INSERT INTO kv (key, value) VALUES ('maintenance_mode', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           (json.dumps(self.stage.in_maintenance()),))
        return out

    def _energy(self, machine: str) -> float | None:
        """The machine's energy counter (kWh), None when it has no meter."""
        track = self.stage.engine.tracks.get(machine)
        if track is None or not track.settings.energy_signal or track.settings.energy_signal not in track.usage.raw:
            return None
        return track.usage.counters["energy_kwh"]

    def save_counters(self) -> None:
        now = self.clock()
        with self.store.transaction() as db:
            for mid, track in self.stage.engine.tracks.items():
                for name, value in track.usage.snapshot().items():
                    db.execute("INSERT INTO counters (machine, name, value, updated_ns) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (machine, name) DO UPDATE SET value = excluded.value, "
                               "updated_ns = excluded.updated_ns", (mid, name, value, now))

    # --- every second and every event ----------------------------------------------------------------------
    def tick(self) -> None:
        """Usage ledger, maintenance due checks and saved counters; called every second after the stage's tick."""
        now_ns = self.clock()
        values = self.stage.values
        for mid in values.ids():
            self.usage.on_seen(mid, values.get(mid).last_seen_ns)
        self.usage.tick(now_ns)
        if now_ns - self._checked_ns >= MAINTENANCE_CHECK_NS:
            self._checked_ns = now_ns
            self.maintenance.check(now_ns)
        if now_ns - self._saved_ns >= SAVE_EVERY_NS:
            self._saved_ns = now_ns
            self.save_counters()

    def _on_event(self, event: Event) -> None:
        values = self.stage.values
        self.usage.on_event(event, last_seen_ns=values.get(event.machine).last_seen_ns
                            if values.has(event.machine) else None)
        if self.topics is not None:
            self.topics.on_event(event)

    # --- queries for the API --------------------------------------------------------------------------------
    def billing(self) -> BillingSection | None:
        """The billing section in effect now: the site file's with the changes admins made through the API
        (billing/catalog.py). The usage ledger checks assignments against it."""
        b = self.catalog.at(self.clock())
        self.usage.billing = b
        return b

    def events(self, *, machine: str | None, type_: str | None, start_ns: int, end_ns: int,
               limit: int) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM events WHERE ts_ns >= ? AND ts_ns < ?", list[Any]([start_ns, end_ns])
        if machine:
            sql += " AND machine = ?"
            params.append(machine)
        if type_:
            sql += " AND type = ?"
            params.append(type_)
        sql += " ORDER BY ts_ns DESC, id DESC LIMIT ?"
        params.append(limit)
        return [Event(r["ts_ns"], r["machine"], r["type"], json.loads(r["data"]), r["id"]).as_dict()
                for r in self.store.query(sql, params)]

    def oee(self, machine: str, start_ns: int, end_ns: int) -> dict[str, Any]:
        before = self.store.one("SELECT data FROM events WHERE machine = ? AND type = 'state' AND ts_ns <= ? "
                                "ORDER BY ts_ns DESC, id DESC LIMIT 1", (machine, start_ns))
        initial = json.loads(before["data"])["to"] if before is not None else "offline"
        changes = [(r["ts_ns"], json.loads(r["data"])["to"]) for r in self.store.query(
            "SELECT ts_ns, data FROM events WHERE machine = ? AND type = 'state' AND ts_ns > ? AND ts_ns < ? "
            "ORDER BY ts_ns, id", (machine, start_ns, end_ns))]
        production = [(r["minute_ns"], r["total"], r["good"]) for r in self.store.query(
            "SELECT minute_ns, total, good FROM production WHERE machine = ? AND minute_ns >= ? AND minute_ns < ?",
            (machine, start_ns - MINUTE_NS, end_ns))]
        windows = shift_windows(self.cfg.shifts, self.cfg.site.timezone, start_ns, end_ns)
        ideal = self.stage.engine.settings(machine).ideal_cycle_s
        return {"machine": machine, "ideal_cycle_s": ideal,
                **oee_report(windows, initial, changes, production, ideal)}

    # --- lifetime -------------------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.topics is not None:
            self.topics.start()
            for mid in self.stage.ids():
                m = self.stage.state_of(mid)
                self.topics.publish(mid, m.state, m.state_since_ns, m.basis)
        tasks = [asyncio.create_task(self.notifier.run(), name="notifier")]
        if self.exporter is not None:
            tasks.append(asyncio.create_task(self.exporter.run(), name="events-export"))
        if self.oee_exporter is not None:
            tasks.append(asyncio.create_task(self.oee_exporter.run(), name="oee-export"))
        if self.maintenance_exporter is not None:
            tasks.append(asyncio.create_task(self.maintenance_exporter.run(), name="maintenance-export"))
        if self.usage_exporter is not None:
            tasks.append(asyncio.create_task(self.usage_exporter.run(), name="usage-export"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.save_counters()
        with contextlib.suppress(Exception):
            for mid in self.stage.values.ids():
                self.usage.on_seen(mid, self.stage.values.get(mid).last_seen_ns)
            self.usage.save()
        if self.topics is not None:
            with contextlib.suppress(Exception):
                self.topics.stop()
        if self._own_client:
            await self.http.aclose()
        self.store.close()
