"""OPC UA machine config as a technician reads its errors: exact check-config text."""

from __future__ import annotations

from gateway.config.loader import check_text
from gateway.registry import discover

SPECS = discover()

BASE = """\
site:
  id: kartech
  name: Test hub
machines:
  - id: cnc-01
    name: CNC mill
    kind: cnc
    driver: opcua
    endpoint: opc.tcp://10.0.3.17:4840
    security: {policy: None}
    signals:
      spindle_speed: {node: "nsu=urn:vendor:cnc;s=Spindle.Speed", unit: rpm}
      state:
        node: "nsu=urn:vendor:cnc;s=ExecutionState"
        map: {Executing: executing, NotExecuting: stopped}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, env or {}).problems]


def test_valid_machine() -> None:
    result = check_text(BASE, "site.yaml", SPECS, {})
    assert result.problems == []
    assert result.config is not None
    m = result.config.machines[0]
    assert m.driver == "opcua"
    assert m.signals["state"].map == {"Executing": "executing", "NotExecuting": "stopped"}  # type: ignore[attr-defined]


def test_http_endpoint_suggests_opc_tcp() -> None:
    assert problems(BASE.replace("opc.tcp://10.0.3.17:4840", "http://10.0.3.17:4840")) == [
        'site.yaml:9 — machine "cnc-01" (driver opcua)\n'
        '  endpoint: "http://10.0.3.17:4840" is not an OPC UA address; use opc.tcp://10.0.3.17:4840'
    ]


def test_endpoint_without_port_gets_the_default_port() -> None:
    assert problems(BASE.replace("opc.tcp://10.0.3.17:4840", "10.0.3.17")) == [
        'site.yaml:9 — machine "cnc-01" (driver opcua)\n'
        '  endpoint: "10.0.3.17" is not an OPC UA address; use opc.tcp://10.0.3.17:4840'
    ]


def test_bad_node_id_shows_the_forms_that_work() -> None:
    assert problems(BASE.replace('"nsu=urn:vendor:cnc;s=Spindle.Speed"', '"ns=two;Spindle.Speed"')) == [
        'site.yaml:12 — machine "cnc-01" (driver opcua)\n'
        '  signals.spindle_speed.node: "ns=two;Spindle.Speed" is not an OPC UA node id; use e.g. '
        "nsu=urn:vendor:machine;s=Spindle.Speed, ns=2;i=1001 or i=2258"
    ]


def test_security_needs_mode_and_certificates() -> None:
    text = BASE.replace("security: {policy: None}", "security: {policy: Basic256Sha256}")
    assert problems(text) == [
        'site.yaml:10 — machine "cnc-01" (driver opcua)\n'
        "  security: policy Basic256Sha256 needs mode: Sign or SignAndEncrypt"
    ]
    text = BASE.replace("security: {policy: None}", "security: {policy: Basic256Sha256, mode: SignAndEncrypt}")
    assert problems(text) == [
        'site.yaml:10 — machine "cnc-01" (driver opcua)\n'
        "  security: policy Basic256Sha256 needs certificate, private_key, trust_dir; create the gateway "
        "certificate with `kartech opcua cert --out DIR` and put trusted server certificates in trust_dir"
    ]


def test_unknown_policy_suggests_the_closest() -> None:
    text = BASE.replace("security: {policy: None}", "security: {policy: Basic256sha256}")
    assert problems(text) == [
        'site.yaml:10 — machine "cnc-01" (driver opcua)\n'
        '  security.policy: "Basic256sha256" is not allowed; use one of None, Basic256Sha256, '
        'Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss; did you mean "Basic256Sha256"?'
    ]


def test_security_section_is_required() -> None:
    assert problems(BASE.replace("    security: {policy: None}\n", "")) == [
        'site.yaml:5 — machine "cnc-01" (driver opcua)\n'
        "  security: is required — Security policy and trust; write `security: {policy: None}` to connect "
        "without it (logged)."
    ]


def test_literal_password_is_refused() -> None:
    identity = "    identity: {type: username, username: gw, password: s3cret}\n"
    text = BASE.replace("    security: {policy: None}\n", "    security: {policy: None}\n" + identity)
    assert problems(text) == [
        'site.yaml:11 — machine "cnc-01" (driver opcua)\n'
        "  identity.password: is written literally; write it as ${ENV_VAR} so the secret stays out of the file "
        "(e.g. password: ${KARTECH_IDENTITY_PASSWORD})"
    ]
    env_text = text.replace("password: s3cret", "password: \"${CNC_PASSWORD}\"")
    assert problems(env_text, {"CNC_PASSWORD": "x"}) == []


def test_signal_needs_exactly_one_address() -> None:
    text = BASE.replace('{node: "nsu=urn:vendor:cnc;s=Spindle.Speed", unit: rpm}', "{unit: rpm}")
    assert problems(text) == [
        'site.yaml:12 — machine "cnc-01" (driver opcua)\n'
        "  signals.spindle_speed: give exactly one of node: or path: (e.g. node: "
        "nsu=urn:vendor:machine;s=Spindle.Speed)"
    ]


def test_username_identity_needs_a_username() -> None:
    identity = "    identity: {type: username}\n"
    text = BASE.replace("    security: {policy: None}\n", "    security: {policy: None}\n" + identity)
    assert problems(text) == [
        'site.yaml:11 — machine "cnc-01" (driver opcua)\n'
        "  identity: type username needs username: and password: ${ENV_VAR}"
    ]


def test_driver_example_file_is_valid() -> None:
    from pathlib import Path

    example = (Path(__file__).resolve().parents[2] / "drivers" / "opcua" / "example.yaml").read_text()
    text = "site: {id: kartech, name: Test}\n" + example
    assert problems(text, {"CNC01_OPCUA_PASSWORD": "x"}) == []
