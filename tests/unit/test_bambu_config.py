"""Bambu machine config as a technician reads its errors: exact text, with file, line, machine and key."""

from __future__ import annotations

from drivers.bambu import DRIVER
from drivers.bambu.config import BambuMachine
from gateway.config.loader import check_text

SPECS = {"bambu": DRIVER}
ENV = {"X1C_CODE": "12345678", "P1S_CODE": "87654321"}
FP = "3F:9A:0C:5E:71:B2:48:D6:0E:13:C9:7F:A4:25:88:61:D0:5B:E7:3A:92:C4:1F:68:B7:05:EE:3D:49:A1:76:C2"  # as openssl

BASE = """\
site:
  id: kartech
  name: Test hub
machines:
  - id: x1c-01
    name: X1C
    kind: printer
    driver: bambu
    host: 192.168.10.41
    serial: 00M09A350100123
    access_code: ${X1C_CODE}
    tls: {ca_file: /etc/kartech/bambu-printer-ca.pem}
  - id: p1s-01
    name: P1S
    kind: printer
    driver: bambu
    host: 192.168.10.42
    serial: 01P00A411800456
    access_code: ${P1S_CODE}
    tls:
      fingerprint_sha256: "FP"
""".replace("FP", FP)


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, ENV).problems]


def test_valid_file_has_no_problems_and_the_defaults_are_gentle_on_the_printers() -> None:
    result = check_text(BASE, "site.yaml", SPECS, ENV)
    assert result.problems == []
    assert result.config is not None
    x1c, p1s = result.config.machines
    assert isinstance(x1c, BambuMachine)
    assert isinstance(p1s, BambuMachine)
    assert (x1c.port, x1c.pushall_interval_s, x1c.access_code) == (8883, 300.0, "12345678")
    assert p1s.tls.fingerprint_sha256 == "3f9a0c5e71b248d60e13c97fa4258861d05be73a92c41f68b705ee3d49a176c2"
    assert "12345678" not in repr(x1c)


def test_tls_needs_exactly_one_way_to_check_the_printer() -> None:
    text = BASE.replace("tls: {ca_file: /etc/kartech/bambu-printer-ca.pem}", "tls: {}")
    assert problems(text) == [
        'site.yaml:12 — machine "x1c-01" (driver bambu)\n  tls: needs exactly one of ca_file (the CA that signed '
        "the printer's certificate) or fingerprint_sha256 (the printer's own certificate, pinned)"]


def test_a_fingerprint_that_is_not_sha256_and_a_url_as_host_are_explained() -> None:
    text = BASE.replace('"3F:9A:0C', '"3F:9A').replace("host: 192.168.10.41", "host: mqtts://192.168.10.41")
    assert problems(text) == [
        'site.yaml:9 — machine "x1c-01" (driver bambu)\n  host: "mqtts://192.168.10.41" is an address, not a URL; '
        "write the printer's IP or host name, e.g. 192.168.1.40",
        'site.yaml:21 — machine "p1s-01" (driver bambu)\n  tls.fingerprint_sha256: "3F:9A:5E:71:B2:48:D6:0E:13:C9:'
        '7F:A4:25:88:61:D0:5B:E7:3A:92:C4:1F:68:B7:05:EE:3D:49:A1:76:C2" is not a SHA-256 fingerprint; write 64 hex '
        "digits (colons allowed), e.g. AB:CD:...:EF as openssl prints it"]


def test_two_machines_with_one_serial_are_refused() -> None:
    text = BASE.replace("serial: 01P00A411800456", "serial: 00M09A350100123")
    assert problems(text) == [
        'site.yaml:18 — machine "p1s-01" (driver bambu)\n  serial: "00M09A350100123" is already the serial of machine '
        '"x1c-01" (machines[0]); each printer has its own serial (Settings > Device on its screen)']


def test_pushall_more_often_than_every_10_s_is_refused() -> None:
    text = BASE.replace("    access_code: ${P1S_CODE}\n", "    access_code: ${P1S_CODE}\n    pushall_interval_s: 1\n")
    assert problems(text) == [
        'site.yaml:20 — machine "p1s-01" (driver bambu)\n  pushall_interval_s: 1 is out of range: input should be '
        "greater than or equal to 10"]
