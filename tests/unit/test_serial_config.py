"""Serial machine config as a technician reads its errors: exact text, with file, line, machine and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.serial import DRIVER
from drivers.serial.config import SerialMachine, template_to_regex
from gateway.cli import main
from gateway.config.loader import check_text

SPECS = {"serial": DRIVER}

BASE = """\
site:
  id: kartech
  name: Test hub
machines:
  - id: balance-01
    name: Balance GX-200
    kind: balance
    driver: serial
    port: /dev/serial/by-id/usb-AND_GX-200-if00
    baud_rate: 9600
    protocol: lines
    instrument:
      messages:
        - request: SI
          pattern: '^(?P<status>ST|US),GS,(?P<weight>[-+ 0-9.]+) g$'
          fields:
            weight: {unit: g}
            stable: {group: status, type: bool, map: {ST: true, US: false}}
  - id: fdm-01
    name: Prusa MK3S
    kind: printer
    driver: serial
    port: /dev/serial/by-id/usb-Prusa_Research_Original_Prusa_i3_MK3-if00
    protocol: marlin
"""


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, {}).problems]


def test_valid_file_has_no_problems() -> None:
    result = check_text(BASE, "site.yaml", SPECS, {})
    assert result.problems == []
    assert result.config is not None
    balance, printer = result.config.machines
    assert isinstance(balance, SerialMachine)
    assert isinstance(printer, SerialMachine)
    assert printer.printer_options().poll_interval_s == 2.0
    assert printer.baud_rate == 115200


def test_regex_without_the_named_group_a_field_needs_is_rejected_naming_the_group() -> None:
    assert problems(BASE.replace("{group: status, type: bool", "{type: bool")) == [
        'site.yaml:14 — machine "balance-01" (driver serial)\n'
        '  instrument.messages[0]: field "stable" needs the named group "stable", which the pattern does not have '
        "(its groups: status, weight); add (?P<stable>...) or set `group:`"
    ]


def test_template_without_the_group_is_rejected_too() -> None:
    text = BASE.replace("pattern: '^(?P<status>ST|US),GS,(?P<weight>[-+ 0-9.]+) g$'",
                        "template: '{status},{mode},{mass:number} {unit}'")
    assert problems(text) == [
        'site.yaml:14 — machine "balance-01" (driver serial)\n'
        '  instrument.messages[0]: field "weight" needs the named group "weight", which the template does not have '
        "(its groups: mass, mode, status, unit); add (?P<weight>...) or set `group:`"
    ]


def test_bad_regex_bad_parity_and_missing_section_are_all_reported() -> None:
    text = (BASE.replace("(?P<weight>[-+ 0-9.]+)", "(?P<weight>[-+ 0-9.]+")
            .replace("    baud_rate: 9600\n", "    baud_rate: 9600\n    parity: evn\n")
            .replace("    protocol: marlin\n", "    protocol: lines\n"))
    assert problems(text) == [
        'site.yaml:11 — machine "balance-01" (driver serial)\n'
        '  parity: "evn" is not allowed; use one of none, even, odd, mark, space; did you mean "even"?',
        'site.yaml:16 — machine "balance-01" (driver serial)\n'
        '  instrument.messages[0].pattern: "^(?P<status>ST|US),GS,(?P<weight>[-+ 0-9.]+ g$" is not a valid regular '
        "expression: missing ), unterminated subpattern at position 22",
        'site.yaml:20 — machine "fdm-01" (driver serial)\n'
        '  protocol lines needs an `instrument:` section with `messages:`',
    ]


def test_two_machines_on_one_port_are_refused() -> None:
    text = BASE.replace("usb-Prusa_Research_Original_Prusa_i3_MK3-if00", "usb-AND_GX-200-if00")
    assert problems(text) == [
        'site.yaml:23 — machine "fdm-01" (driver serial)\n'
        '  port: "/dev/serial/by-id/usb-AND_GX-200-if00" is already the port of machine "balance-01" (machines[0]); '
        "a serial port has one owner — give each machine its own port"
    ]


def test_network_address_as_port_and_printer_section_on_an_instrument() -> None:
    text = BASE.replace("port: /dev/serial/by-id/usb-AND_GX-200-if00", "port: tcp://10.0.3.17:4001")
    assert problems(text) == [
        'site.yaml:9 — machine "balance-01" (driver serial)\n'
        '  port: "tcp://10.0.3.17:4001" is a network address, not a serial device; use e.g. /dev/serial/by-id/...'
    ]


def test_check_config_exits_1_naming_the_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(BASE.replace("{group: status, type: bool", "{type: bool"))
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert (f'{bad}:14 — machine "balance-01" (driver serial)\n  instrument.messages[0]: field "stable" needs the '
            'named group "stable", which the pattern does not have (its groups: status, weight); add (?P<stable>...) '
            "or set `group:`") in err
    assert err.rstrip().endswith("1 problem in 1 file.")
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    assert main(["check-config", str(good)]) == 0


@pytest.mark.parametrize(("template", "line", "groups"), [
    ("{status},{mode},{weight:number} {unit}", "ST,GS,+   12.345 g",
     {"status": "ST", "mode": "GS", "weight": "+   12.345", "unit": "g"}),
    ("{value:number}", "+2.345678E+01", {"value": "+2.345678E+01"}),
    ("T={t:number}C RH={rh:int}%", "T=21.5C RH=40%", {"t": "21.5", "rh": "40"}),
    ("{label:text}: {v:number}", "Sample 3: -0.5", {"label": "Sample 3", "v": "-0.5"}),
])
def test_templates_compile_to_named_groups(template: str, line: str, groups: dict[str, str]) -> None:
    import re

    m = re.match(template_to_regex(template), line)
    assert m is not None
    assert m.groupdict() == groups


def test_driver_example_file_is_valid() -> None:
    example = (Path(__file__).resolve().parents[2] / "drivers" / "serial" / "example.yaml").read_text()
    result = check_text("site: {id: t, name: T}\n" + example, "example.yaml", SPECS, {})
    assert result.problems == []


def test_true_values_is_refused_with_the_map_that_replaces_it() -> None:
    assert problems(BASE.replace("map: {ST: true, US: false}", "true_values: [ST]")) == [
        'site.yaml:18 — machine "balance-01" (driver serial)\n'
        "  instrument.messages[0].fields.stable: true_values was replaced by map, which names both answers, e.g. "
        "map: {ST: true, US: false}; text that is neither in the map nor a bool word (true/false, on/off, yes/no, "
        "1/0) is now counted as bad input instead of read as false"
    ]
