"""`kartech opcua browse` and `kartech opcua cert` against a real simulator server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from gateway.cli import main
from simulators.opcua_sim import CNC_NS, OpcuaSimServer


@pytest.fixture(scope="module")
def sim() -> Iterator[OpcuaSimServer]:
    s = OpcuaSimServer([("cnc-01", "cnc")], interval_s=0.2)
    s.start()
    yield s
    s.stop()


def test_browse_prints_the_tree_with_node_ids_types_and_values(sim: OpcuaSimServer,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opcua", "browse", sim.endpoint]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Objects  i=85"
    assert f"  cnc-01/  nsu={CNC_NS};s=cnc-01" in out
    speed = next(line for line in out if line.startswith("      Speed  "))
    assert speed.startswith(f"      Speed  nsu={CNC_NS};s=cnc-01.Spindle.Speed  Double = ")
    state = next(line for line in out if "ExecutionState" in line)
    assert "MachineryExecutionState = " in state
    assert state.endswith(("(Executing)", "(NotExecuting)", "(OutOfService)", "(NotAvailable)"))
    assert not any("ServerStatus" in line for line in out)  # the Server object only with --all


def test_browse_yaml_block_is_ready_to_paste(sim: OpcuaSimServer, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [f"nsu={CNC_NS};s=cnc-01.Spindle.Speed", f"nsu={CNC_NS};s=cnc-01.ExecutionState"]
    assert main(["opcua", "browse", sim.endpoint, "--yaml", *nodes]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "signals:"
    assert out[1] == "  spindle_speed:"
    assert out[2].startswith(f'    node: "nsu={CNC_NS};s=cnc-01.Spindle.Speed"   # Double, now ')
    assert out[3] == "  execution_state:"
    assert out[5] == ("    map: {NotAvailable: offline, OutOfService: maintenance, NotExecuting: idle, Executing: "
                      "running}   # values -> machine states; edit or remove")


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
