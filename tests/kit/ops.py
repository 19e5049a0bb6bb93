"""Shared helpers of the operations tests (state, alerts, maintenance, OEE): a stepped clock, a site built from
YAML, the live view and the state stage with the services on a throwaway store, and readings at the clock's
time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.live import LiveValues
from gateway.machines import MachineMeta
from gateway.reading import Quality, Reading, Value, now_ns
from gateway.registry import discover
from gateway.runtime import machine_metas
from gateway.services import Services
from gateway.state.engine import StateEngine
from gateway.state.stage import StateStage

NS = 1_000_000_000
T0 = 1_794_985_200 * NS  # 2026-11-18T07:00:00Z = 12:00 in Asia/Almaty
SPECS = discover()

MACHINES = """\
machines:
  - {id: fdm-01, name: Printer 1, kind: printer, lab: printfarm, driver: mqtt, broker: lab, expected_interval_s: 1,
     topics: [{topic: "lab/{site}/{machine}/report", fields: {state: {type: string}}}]}
  - {id: furnace-01, name: Furnace 1, kind: furnace, lab: materials, driver: mqtt, broker: lab,
     expected_interval_s: 1, topics: [{topic: "lab/{site}/{machine}/t", fields: {temperature: {unit: degC}}}]}
  - {id: cnc-01, name: CNC 1, kind: cnc, lab: shop, driver: mqtt, broker: lab, expected_interval_s: 1,
     topics: [{topic: "lab/{site}/{machine}/t", fields: {state: {type: string}}}]}
  - {id: plug-01, name: Laser on a smart plug, kind: laser, lab: shop, driver: mqtt, broker: lab,
     expected_interval_s: 1, topics: [{topic: "lab/{site}/{machine}/p", fields: {power_w: {unit: W}}}]}
"""


def site(extra: str = "", machines: str = MACHINES) -> SiteConfig:
    text = "site: {id: krg, name: Test hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + machines + extra
    result = check_text(text, "site.yaml", SPECS, {})
    assert result.problems == [], [str(p) for p in result.problems]
    assert result.config is not None
    return result.config


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t

    def step(self, seconds: float) -> int:
        self.t += int(seconds * NS)
        return self.t


class Recorder:
    """A notification sender that records payloads (or fails while `fail` is set)."""

    kind = "test"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail: str | None = None

    async def send(self, payload: dict[str, Any]) -> None:
        from gateway.notify.channels import DeliveryFailed

        if self.fail:
            raise DeliveryFailed(self.fail)
        self.sent.append(payload)


class Lab:
    """The live view and the state stage wired as the runtime wires them, driven step by step: `update` is what
    the pipeline and the stage task do with one committed batch, `tick` what the runtime does every second. The
    clock is the wall clock unless a stepped one is given."""

    def __init__(self, metas: Sequence[MachineMeta], clock: Callable[[], int] = now_ns, cfg: SiteConfig | None = None,
                 stale_min_s: float | None = None) -> None:
        section = cfg.state if cfg is not None else None
        self.values = LiveValues(metas, clock=clock, stale_min_s=stale_min_s if stale_min_s is not None
                                 else section.stale_min_s if section is not None else 10.0)
        self.stage = StateStage(metas, self.values, section=section)
        self.services: Services | None = None

    @property
    def engine(self) -> StateEngine:
        return self.stage.engine

    def update(self, readings: Sequence[Reading]) -> None:
        self.values.apply(readings)
        self.stage.process([readings])

    def tick(self) -> None:
        self.stage.tick()
        if self.services is not None:
            self.services.tick()

    def machine(self, machine_id: str) -> dict[str, Any]:
        return self.stage.machine(machine_id)

    def set_maintenance(self, machine_id: str, active: bool, *, by: str = "", note: str = "") -> dict[str, Any]:
        return self.stage.set_maintenance(machine_id, active, by=by, note=note)

    def set_connected(self, machine_ids: Sequence[str], connected: bool) -> None:
        self.stage.set_connected(machine_ids, connected)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return self.stage.fanout.subscribe()


def build(cfg: SiteConfig, data_dir: Path, clock: Clock, senders: dict[str, Any] | None = None,
          ) -> tuple[Lab, Services]:
    metas = machine_metas(cfg)
    lab = Lab(metas, clock, cfg)
    lab.services = Services(cfg, lab.stage, data_dir, metas=metas, clock=clock, senders=senders or {})
    return lab, lab.services


def readings(machine: str, at_ns: int, **signals: Value) -> list[Reading]:
    return [Reading(machine, name, value, None, Quality.GOOD, at_ns, at_ns) for name, value in signals.items()]


def feed(live: Lab, clock: Clock, machine: str, **signals: Value) -> None:
    live.update(readings(machine, clock(), **signals))
