"""MQTT: machines that publish JSON or plain numbers to a broker."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.mqtt.config import MqttMachine
from drivers.mqtt.driver import MqttDriver
from gateway.config.models import MachineBase
from gateway.config.site import SiteConfig
from gateway.driver import Driver, DriverSpec


def build(cfg: SiteConfig, machines: Sequence[MachineBase]) -> list[Driver]:
    by_broker: dict[str, list[MqttMachine]] = {}
    for m in machines:
        assert isinstance(m, MqttMachine)
        by_broker.setdefault(m.broker, []).append(m)
    return [MqttDriver(b, by_broker[b.id], cfg.site.id) for b in cfg.mqtt.brokers if b.id in by_broker]


def check(cfg: SiteConfig) -> list[tuple[tuple[str | int, ...], object, str]]:
    brokers = [b.id for b in cfg.mqtt.brokers]
    out: list[tuple[tuple[str | int, ...], object, str]] = []
    for i, m in enumerate(cfg.machines):
        if isinstance(m, MqttMachine) and m.broker not in brokers:
            hint = f"use one of: {', '.join(brokers)}" if brokers else "add it under mqtt.brokers"
            msg = f'"{m.broker}" is not a broker under mqtt.brokers; {hint}'
            out.append((("machines", i, "broker"), m.broker, msg))
    return out


DRIVER = DriverSpec(
    name="mqtt",
    machine_model=MqttMachine,
    build=build,
    summary="Machines that publish JSON or plain numbers to an MQTT broker (3.1.1 or 5).",
    check=check,
)
