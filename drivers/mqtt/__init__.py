"""MQTT: machines that publish JSON or plain numbers to a broker."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.mqtt.config import MqttMachine, MqttSection
from drivers.mqtt.driver import MqttDriver
from gateway.driver import Driver, DriverEnv, DriverSpec, Problem


def build(machines: Sequence[MqttMachine], env: DriverEnv) -> list[Driver]:
    """One connection per broker, serving every machine that publishes there."""
    assert isinstance(env.settings, MqttSection)
    by_broker: dict[str, list[MqttMachine]] = {}
    for m in machines:
        by_broker.setdefault(m.broker, []).append(m)
    return [MqttDriver(b, by_broker[b.id], env.site_id) for b in env.settings.brokers if b.id in by_broker]


def check(machines: Sequence[tuple[int, MqttMachine]], settings: object) -> list[Problem]:
    assert isinstance(settings, MqttSection)
    brokers = [b.id for b in settings.brokers]
    out: list[Problem] = []
    for i, m in machines:
        if m.broker not in brokers:
            hint = f"use one of: {', '.join(brokers)}" if brokers else "add it under mqtt.brokers"
            msg = f'"{m.broker}" is not a broker under mqtt.brokers; {hint}'
            out.append((("machines", i, "broker"), m.broker, msg))
    return out


DRIVER = DriverSpec(
    name="mqtt",
    machine_model=MqttMachine,
    build=build,
    summary="Machines that publish JSON or plain numbers to an MQTT broker (3.1.1 or 5).",
    section="mqtt",
    check=check,
    simulator="simulators.mqtt_lab:simulator",
)
