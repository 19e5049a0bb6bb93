"""`kartech opcua browse` and `kartech opcua cert` against a real simulator server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from drivers.opcua.cli import DEFAULT_KEY
from drivers.opcua.security import make_certificate, write_certificate
from gateway.cli import main
from gateway.config.loader import check_text
from gateway.registry import discover
from simulators.opcua_sim import CNC_NS, SIM_APP_URI, OpcuaSimServer


@pytest.fixture(scope="module")
def sim() -> Iterator[OpcuaSimServer]:
    s = OpcuaSimServer([("cnc-01", "cnc")], interval_s=0.2)
    s.start()
    yield s
    s.stop()


def test_browse_tree_shows_node_ids_types_and_values(sim: OpcuaSimServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opcua", "browse", sim.endpoint, "--tree"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Objects  i=85"
    assert f"  cnc-01/  nsu={CNC_NS};s=cnc-01" in out
    speed = next(line for line in out if line.startswith("      Speed  "))
    assert speed.startswith(f"      Speed  nsu={CNC_NS};s=cnc-01.Spindle.Speed  Double = ")
    state = next(line for line in out if "ExecutionState" in line)
    assert "MachineryExecutionState = " in state
    assert state.endswith(("(Executing)", "(NotExecuting)", "(OutOfService)", "(NotAvailable)"))
    assert not any("ServerStatus" in line for line in out)  # the Server object only with --all
    assert not any("EngineeringUnits" in line for line in out)  # properties describe a variable


def test_browse_prints_a_paste_ready_machine_block_with_units(sim: OpcuaSimServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without flags: endpoint, security and every variable as a signal, units from EngineeringUnits."""
    assert main(["opcua", "browse", sim.endpoint]) == 0
    out = capsys.readouterr().out
    block = yaml.safe_load(out)
    assert block["endpoint"] == sim.endpoint
    assert block["security"] == {"policy": "None"}  # the only policy this server offers
    signals = block["signals"]
    assert signals["spindle_speed"] == {"node": f"nsu={CNC_NS};s=cnc-01.Spindle.Speed", "unit": "rpm"}
    assert signals["spindle_load"]["unit"] == "%"
    assert signals["feed_rate"]["unit"] == "mm/min"
    assert "unit" not in signals["part_counter"]
    assert signals["execution_state"] == {"node": f"nsu={CNC_NS};s=cnc-01.ExecutionState"}
    assert "values NotAvailable, OutOfService, NotExecuting, Executing" in out  # for state rules
    # pasted under a machine, check-config accepts it as it is
    machine = yaml.safe_dump({"id": "cnc-01", "name": "CNC", "kind": "cnc", "driver": "opcua", **block},
                             sort_keys=False)
    text = "site: {id: lab, name: Lab}\nmachines:\n" + "\n".join("  " + ("- " if i == 0 else "  ") + line
                                                             for i, line in enumerate(machine.splitlines()))
    result = check_text(text, "pasted.yaml", discover(), {})
    assert result.problems == []


def test_browse_uses_the_most_secure_policy_the_server_offers(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = make_certificate(common_name="Kartech sim", application_uri=SIM_APP_URI,
                                 hostnames=["127.0.0.1", "localhost"], server=True)
    own = write_certificate(tmp_path / "pki" / "own", application_uri="urn:kartech:gateway:test")
    trust = tmp_path / "pki" / "trusted"
    trust.mkdir()
    (trust / "sim.der").write_bytes(cert)
    secure = OpcuaSimServer([("cnc-01", "cnc")], interval_s=0.2, certificate=cert, private_key=key,
                            security=("None", "Basic256Sha256", "Aes256_Sha256_RsaPss"))
    secure.start()
    try:
        assert main(["opcua", "browse", secure.endpoint, "--cert", str(own.certificate), "--key",
                     str(own.private_key), "--trust-dir", str(trust)]) == 0
        out = capsys.readouterr().out
        # without a gateway certificate it says what to do instead of falling back to no security
        assert main(["opcua", "browse", secure.endpoint, "--cert", str(tmp_path / "none.der")]) == 1
        err = capsys.readouterr().err
    finally:
        secure.stop()
    assert out.splitlines()[0] == (
        f"# {secure.endpoint}: security Aes256_Sha256_RsaPss/SignAndEncrypt: the most secure of "
        "Aes256_Sha256_RsaPss/SignAndEncrypt, Basic256Sha256/SignAndEncrypt, Aes256_Sha256_RsaPss/Sign, "
        "Basic256Sha256/Sign, None/None")
    block = yaml.safe_load(out)
    assert block["security"] == {"policy": "Aes256_Sha256_RsaPss", "mode": "SignAndEncrypt",
                                 "certificate": str(own.certificate.resolve()),
                                 "private_key": str(own.private_key.resolve()), "trust_dir": str(trust.resolve())}
    assert block["signals"]["spindle_speed"]["unit"] == "rpm"
    assert err.startswith(f"kartech opcua browse: {secure.endpoint} offers Aes256_Sha256_RsaPss/SignAndEncrypt "
                          f"(its most secure), which needs the gateway's certificate: {tmp_path / 'none.der'} and "
                          f"{DEFAULT_KEY} not found; create it with `kartech opcua cert --out pki/own`")


def test_browse_unreachable_server_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opcua", "browse", "opc.tcp://127.0.0.1:1", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kartech opcua browse: opc.tcp://127.0.0.1:1: ")
    assert "Traceback" not in err


def test_cert_creates_an_application_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "own"
    assert main(["opcua", "cert", "--out", str(out_dir), "--uri", "urn:kartech:gateway:test",
                 "--host", "gw.lab.local"]) == 0
    cert = x509.load_der_x509_certificate((out_dir / "kartech-gateway.der").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:kartech:gateway:test"]
    assert san.get_values_for_type(x509.DNSName) == ["gw.lab.local"]
    assert (out_dir / "kartech-gateway.key.pem").stat().st_mode & 0o777 == 0o600
    assert "policy: Basic256Sha256" in capsys.readouterr().out
    assert main(["opcua", "cert", "--out", str(out_dir)]) == 1  # never overwritten silently
    assert "exists; pass --force" in capsys.readouterr().err
