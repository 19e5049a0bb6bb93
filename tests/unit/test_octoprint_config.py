"""OctoPrint machine config as a technician reads its errors: exact text, with file, line, machine and key."""

from __future__ import annotations

from drivers.octoprint import DRIVER
from gateway.config.loader import check_text

SPECS = {"octoprint": DRIVER}
BASE = """\
site: {id: kartech, name: Test hub}
machines:
  - id: ender-01
    name: Ender-3 V2
    kind: printer
    driver: octoprint
    url: http://octopi.local/octoprint/
    api_key: ${OCTO_KEY}
"""


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, {"OCTO_KEY": "k" * 32}).problems]


def test_valid_and_the_url_kept_without_its_slash() -> None:
    result = check_text(BASE, "site.yaml", SPECS, {"OCTO_KEY": "k" * 32})
    assert result.problems == []
    assert result.config is not None
    assert result.config.machines[0].url == "http://octopi.local/octoprint"  # type: ignore[attr-defined]


def test_key_missing_or_literal_and_a_bad_tool() -> None:
    assert problems(BASE.replace("    api_key: ${OCTO_KEY}\n", "")) == [
        'site.yaml:3 — machine "ender-01" (driver octoprint)\n  api_key: is required — An application key or user '
        "API key of an OctoPrint user with the STATUS permission (OctoPrint: Settings > Application Keys): write it "
        "as ${ENV_VAR}, never literally."]
    assert problems(BASE.replace("${OCTO_KEY}", "ABCDEF0123456789")) == [
        'site.yaml:8 — machine "ender-01" (driver octoprint)\n'
        "  api_key: is written literally; write it as ${ENV_VAR} so the secret stays out of the file "
        "(e.g. api_key: ${KARTECH_API_KEY})"]
    assert problems(BASE + "    tool: extruder\n") == [
        'site.yaml:9 — machine "ender-01" (driver octoprint)\n'
        '  tool: "extruder" is not one of OctoPrint\'s tool names; use tool0 for the first extruder, tool1, ...']
