"""Sparkplug B: edge nodes and devices of the Industry 4.0 MQTT standard, read by the gateway as a host application."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.mqtt.config import MqttSection
from drivers.sparkplug.config import SparkplugMachine
from drivers.sparkplug.driver import SparkplugDriver
from gateway.driver import Driver, DriverEnv, DriverSpec, Problem


def build(machines: Sequence[SparkplugMachine], env: DriverEnv) -> list[Driver]:
    """One host application connection per broker, serving every machine there."""
    assert isinstance(env.settings, MqttSection)
    by_broker: dict[str, list[SparkplugMachine]] = {}
    for m in machines:
        by_broker.setdefault(m.broker, []).append(m)
    return [SparkplugDriver(b, mine, env.site_id, mine[0].effective_host_id(env.site_id))
            for b in env.settings.brokers if (mine := by_broker.get(b.id))]


def check(machines: Sequence[tuple[int, SparkplugMachine]], settings: object) -> list[Problem]:
    assert isinstance(settings, MqttSection)
    brokers = [b.id for b in settings.brokers]
    out: list[Problem] = []
    host_ids: dict[str, tuple[str, str | None]] = {}  # broker -> (first machine, its host_id)
    seen: dict[tuple[str, str, str, str | None], str] = {}
    for i, m in machines:
        if m.broker not in brokers:
            hint = f"use one of: {', '.join(brokers)}" if brokers else "add it under mqtt.brokers"
            out.append((("machines", i, "broker"), m.broker, f'"{m.broker}" is not a broker under mqtt.brokers; '
                        f"{hint}"))
        first = host_ids.setdefault(m.broker, (m.id, m.host_id))
        if first[1] != m.host_id:
            out.append((("machines", i, "host_id"), m.host_id,
                        f'the gateway has one Sparkplug host id per broker; machine "{first[0]}" on broker '
                        f'"{m.broker}" says {first[1] or "(default)"}: write the same host_id on both'))
        where = (m.broker, m.group, m.edge_node, m.device)
        if where in seen:
            path = "/".join(x for x in (m.group, m.edge_node, m.device) if x)
            out.append((("machines", i, "device" if m.device else "edge_node"), m.device or m.edge_node,
                        f'{path} is already machine "{seen[where]}"; a Sparkplug edge node or device is read as one '
                        "machine (give it more signals instead)"))
        else:
            seen[where] = m.id
    return out


DRIVER = DriverSpec(
    name="sparkplug",
    machine_model=SparkplugMachine,
    build=build,
    summary="Sparkplug B edge nodes and devices (Sparkplug 3.0, Eclipse Tahu payloads) on an MQTT broker; the "
    "gateway is a host application.",
    section="mqtt",
    check=check,
    simulator="simulators.sparkplug_sim:simulator",
)
