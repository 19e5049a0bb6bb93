"""Sparkplug machine config as a technician reads its errors: exact text, with file, line, machine and key."""

from __future__ import annotations

from drivers.sparkplug import DRIVER
from drivers.sparkplug.config import SparkplugMachine
from gateway.config.loader import check_text

SPECS = {"sparkplug": DRIVER}

BASE = """\
site: {id: kartech, name: Test hub}
mqtt:
  brokers:
    - {id: lab, host: 127.0.0.1}
machines:
  - id: cnc-02
    name: Lathe
    kind: cnc
    driver: sparkplug
    broker: lab
    group: Kartech
    edge_node: edge-1
    device: lathe
    signals:
      spindle_speed: {metric: Spindle/Speed, unit: rpm}
      program: {metric: Program/Name}
  - id: furnace-03
    name: Furnace
    kind: furnace
    driver: sparkplug
    broker: lab
    group: Kartech
    edge_node: edge-1
    device: furnace
    signals:
      temperature: {metric: Chamber/Temperature, unit: degC}
"""


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, {}).problems]


def test_valid_file_has_no_problems() -> None:
    result = check_text(BASE, "site.yaml", SPECS, {})
    assert result.problems == []
    assert result.config is not None
    cnc = result.config.machines[0]
    assert isinstance(cnc, SparkplugMachine)
    assert cnc.metric_of("spindle_speed") == "Spindle/Speed"
    assert cnc.signals["program"].type == "auto"
    assert cnc.effective_host_id("kartech") == "kartech-kartech"


def test_unknown_broker_conflicting_host_ids_and_a_node_twice_are_all_reported() -> None:
    text = (BASE.replace("    broker: lab\n    group: Kartech\n    edge_node: edge-1\n    device: lathe\n",
                         "    broker: plant\n    group: Kartech\n    edge_node: edge-1\n    device: lathe\n"
                         "    host_id: gw-1\n", 1)
            .replace("device: furnace", "device: lathe"))
    assert problems(text) == [
        'site.yaml:10 — machine "cnc-02" (driver sparkplug)\n'
        '  broker: "plant" is not a broker under mqtt.brokers; use one of: lab',
    ]
    text = text.replace("broker: plant", "broker: lab")
    assert problems(text) == [
        'site.yaml:18 — machine "furnace-03" (driver sparkplug)\n'
        '  host_id: the gateway has one Sparkplug host id per broker; machine "cnc-02" on broker "lab" says gw-1: '
        "write the same host_id on both",
        'site.yaml:25 — machine "furnace-03" (driver sparkplug)\n'
        '  device: Kartech/edge-1/lathe is already machine "cnc-02"; a Sparkplug edge node or device is read as one '
        "machine (give it more signals instead)",
    ]


def test_ids_with_topic_separators_or_wildcards_are_refused() -> None:
    assert problems(BASE.replace("edge_node: edge-1\n    device: lathe", "edge_node: line/1\n    device: lathe")) == [
        'site.yaml:12 — machine "cnc-02" (driver sparkplug)\n'
        '  edge_node: "line/1" is not a Sparkplug id; Sparkplug ids are text without \'/\', \'+\' or \'#\'',
    ]


def test_type_auto_is_the_default_and_scaling_text_is_refused() -> None:
    assert problems(BASE.replace("{metric: Program/Name}", "{metric: Program/Name, type: string, scale: 2}")) == [
        'site.yaml:16 — machine "cnc-02" (driver sparkplug)\n'
        "  signals.program: scale and offset apply to numbers; a string signal cannot be scaled",
    ]
