"""PrusaLink machine config as a technician reads its errors: exact text, with file, line, machine and key."""

from __future__ import annotations

from drivers.prusalink import DRIVER
from drivers.prusalink.config import PrusaLinkMachine
from gateway.config.loader import check_text

SPECS = {"prusalink": DRIVER}
ENV = {"MK4_PASSWORD": "s3cret-pass"}

BASE = """\
site: {id: kartech, name: Test hub}
machines:
  - id: mk4-01
    name: Prusa MK4
    kind: printer
    driver: prusalink
    url: http://192.168.10.31
    password: ${MK4_PASSWORD}
"""


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, ENV).problems]


def test_valid_file_has_no_problems_and_the_defaults() -> None:
    result = check_text(BASE, "site.yaml", SPECS, ENV)
    assert result.problems == []
    assert result.config is not None
    (m,) = result.config.machines
    assert isinstance(m, PrusaLinkMachine)
    assert (m.auth, m.username, m.password, m.poll_interval_s, m.reconnect_max_s) == (
        "digest", "maker", "s3cret-pass", 2.0, 5.0)


def test_digest_without_password() -> None:
    assert problems(BASE.replace("    password: ${MK4_PASSWORD}\n", "")) == [
        'site.yaml:3 — machine "mk4-01" (driver prusalink)\n'
        "  auth digest needs password: ${ENV_VAR} (the printer shows it under Settings > Network > PrusaLink)"]


def test_literal_password_and_api_key_are_refused() -> None:
    assert problems(BASE.replace("${MK4_PASSWORD}", "hunter22")) == [
        'site.yaml:8 — machine "mk4-01" (driver prusalink)\n'
        "  password: is written literally; write it as ${ENV_VAR} so the secret stays out of the file "
        "(e.g. password: ${KARTECH_PASSWORD})"]
    text = BASE.replace("    password: ${MK4_PASSWORD}\n", "    auth: api_key\n    api_key: 0123456789abcdef\n")
    assert problems(text) == [
        'site.yaml:9 — machine "mk4-01" (driver prusalink)\n'
        "  api_key: is written literally; write it as ${ENV_VAR} so the secret stays out of the file "
        "(e.g. api_key: ${KARTECH_API_KEY})"]


def test_url_with_a_path_or_credentials() -> None:
    assert problems(BASE.replace("http://192.168.10.31", "http://192.168.10.31/api/v1/status")) == [
        'site.yaml:7 — machine "mk4-01" (driver prusalink)\n'
        '  url: "http://192.168.10.31/api/v1/status" is not the printer\'s base address; use e.g. '
        "http://192.168.10.31"]
    assert problems(BASE.replace("http://192.168.10.31", "192.168.10.31")) == [
        'site.yaml:7 — machine "mk4-01" (driver prusalink)\n'
        '  url: "192.168.10.31" is not the printer\'s base address; use e.g. http://192.168.10.31']


def test_keys_of_the_other_auth_mode_are_refused() -> None:
    text = BASE.replace("    password:", "    auth: api_key\n    password:")
    assert problems(text) == [
        'site.yaml:3 — machine "mk4-01" (driver prusalink)\n'
        "  auth api_key needs api_key: ${ENV_VAR} (the key the printer shows)"]
    assert problems(BASE.replace("    password: ${MK4_PASSWORD}\n", "    auth: none\n")) == []
    assert problems(BASE.replace("    password:", "    auth: none\n    password:")) == [
        'site.yaml:3 — machine "mk4-01" (driver prusalink)\n'
        "  password is for auth digest (this machine has auth none)"]
