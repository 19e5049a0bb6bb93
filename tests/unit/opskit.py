"""Shared helpers of the operations tests (state, alerts, maintenance, OEE): a stepped clock, a site built from
YAML, a live hub with Operations on a throwaway store, and readings at the clock's time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.live import LiveHub
from gateway.reading import Quality, Reading, Value
from gateway.registry import discover
from gateway.runtime import machine_metas
from gateway.state.operations import Operations

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


def build(cfg: SiteConfig, data_dir: Path, clock: Clock, senders: dict[str, Any] | None = None,
          ) -> tuple[LiveHub, Operations]:
    metas = machine_metas(cfg)
    live = LiveHub(metas, clock=clock, state=cfg.state)
    ops = Operations(cfg, live, data_dir, metas=metas, clock=clock, senders=senders or {})
    return live, ops


def readings(machine: str, at_ns: int, **signals: Value) -> list[Reading]:
    return [Reading(machine, name, value, None, Quality.GOOD, at_ns, at_ns) for name, value in signals.items()]


def feed(live: LiveHub, clock: Clock, machine: str, **signals: Value) -> None:
    live.update(readings(machine, clock(), **signals))
