"""Moonraker machine config as a technician reads its errors: exact check-config text."""

from __future__ import annotations

from gateway.config.loader import check_text
from gateway.registry import discover

SPECS = discover()

BASE = """\
site:
  id: kartech
  name: Test hub
machines:
  - id: voron-01
    name: Voron 2.4
    driver: moonraker
    url: ws://192.168.10.41:7125/websocket
    api_key: ${MOONRAKER_VORON_01_KEY}
"""
ENV = {"MOONRAKER_VORON_01_KEY": "4f0ab9c2e1d84d7a9b1c2d3e4f5a6b7c"}


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, ENV if env is None else env).problems]


def test_valid_machine_is_a_printer_by_default() -> None:
    result = check_text(BASE, "site.yaml", SPECS, ENV)
    assert result.problems == []
    assert result.config is not None
    m = result.config.machines[0]
    assert (m.driver, m.kind) == ("moonraker", "printer")
    assert m.api_key == ENV["MOONRAKER_VORON_01_KEY"]  # type: ignore[attr-defined]


def test_the_web_address_suggests_the_websocket() -> None:
    assert problems(BASE.replace("ws://192.168.10.41:7125/websocket", "http://192.168.10.41")) == [
        'site.yaml:8 — machine "voron-01" (driver moonraker)\n'
        '  url: "http://192.168.10.41" is the web address; the driver needs Moonraker\'s WebSocket: use '
        "ws://192.168.10.41:7125/websocket"
    ]


def test_a_url_without_the_websocket_path() -> None:
    assert problems(BASE.replace("7125/websocket", "7125")) == [
        'site.yaml:8 — machine "voron-01" (driver moonraker)\n'
        '  url: "ws://192.168.10.41:7125" must end in /websocket (Moonraker\'s primary WebSocket), e.g. '
        "ws://192.168.10.41:7125/websocket"
    ]


def test_a_literal_api_key_is_refused() -> None:
    assert problems(BASE.replace("${MOONRAKER_VORON_01_KEY}", "4f0ab9c2e1d84d7a9b1c2d3e4f5a6b7c")) == [
        'site.yaml:9 — machine "voron-01" (driver moonraker)\n'
        "  api_key: is written literally; write it as ${ENV_VAR} so the secret stays out of the file (e.g. "
        "api_key: ${KARTECH_API_KEY})"
    ]


def test_a_typo_is_reported() -> None:
    assert problems(BASE + "    reconect_max_s: 5\n") == [
        'site.yaml:10 — machine "voron-01" (driver moonraker)\n'
        '  reconect_max_s: is not a known key; did you mean "reconnect_max_s"?'
    ]
