"""OPC UA driver against real asyncua simulator servers on loopback (and InfluxDB for the end-to-end test)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kit.driver import DriverHarness
from kit.poll import until
from kit.runtime import running

from drivers.opcua.config import OpcuaMachine
from drivers.opcua.driver import OpcuaDriver
from drivers.opcua.security import UntrustedServer, make_certificate, write_certificate
from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.errors import DriverUnavailable
from gateway.reading import Reading
from gateway.registry import discover
from gateway.runtime import Runtime, machine_metas
from simulators.opcua_models import PROGRAMS
from simulators.opcua_sim import CNC_NS, SIM_APP_URI, OpcuaSimServer, node_id
from simulators.services import InfluxDB1

SPECS = discover()
PASSWORD = "furnace-s3cret"


@dataclass(frozen=True)
class Pki:
    server_cert: bytes
    server_key: bytes
    client_cert: Path
    client_key: Path
    root: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """RSA keys are slow to make: one server and one gateway certificate for the whole session."""
    root = tmp_path_factory.mktemp("pki")
    cert, key = make_certificate(common_name="Kartech sim", application_uri=SIM_APP_URI,
                                 hostnames=["127.0.0.1", "localhost"], server=True)
    own = write_certificate(root / "own", application_uri="urn:kartech:gateway:test")
    return Pki(cert, key, own.certificate, own.private_key, root)


def _sim(**kw: Any) -> OpcuaSimServer:
    sim = OpcuaSimServer([("cnc-01", "cnc"), ("furnace-01", "furnace")], interval_s=0.1, **kw)
    sim.start()
    return sim


@pytest.fixture(scope="module")
def sim() -> Iterator[OpcuaSimServer]:
    """A shared server without security; tests must not leave faults switched on."""
    s = _sim()
    yield s
    s.stop()


@pytest.fixture
def own_sim() -> Iterator[OpcuaSimServer]:
    """A server of the test's own, for restarts and stalls."""
    s = _sim()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def secure_sim(pki: Pki) -> Iterator[OpcuaSimServer]:
    s = _sim(security=("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"),
             certificate=pki.server_cert, private_key=pki.server_key, users={"gateway": PASSWORD},
             allow_anonymous=False)
    yield s
    s.stop()


def cnc_yaml(endpoint: str, *, extra: str = "", machine: str = "cnc-01", security: str = "{policy: None}",
             options: str = "") -> str:
    return f"""
  - id: {machine}
    name: CNC mill
    kind: cnc
    driver: opcua
    endpoint: {endpoint}
    security: {security}
    namespace: {CNC_NS}
    publishing_interval_s: 0.1
    sampling_interval_s: 0.1
    watchdog_s: 0.5
    timeout_s: 2
    expected_interval_s: 1
{options}    signals:
      spindle_speed: {{node: "s=cnc-01.Spindle.Speed", unit: rpm}}
      program:       {{node: "s=cnc-01.ProgramName"}}
      part_count:    {{node: "s=cnc-01.PartCounter", unit: count}}
      state:
        node: "s=cnc-01.ExecutionState"
        map: {{Executing: running, NotExecuting: idle, OutOfService: maintenance, NotAvailable: offline}}
{extra}"""


def furnace_yaml(endpoint: str, *, security: str = "{policy: None}", identity: str = "") -> str:
    return f"""
  - id: furnace-01
    name: Furnace
    kind: furnace
    lab: materials
    driver: opcua
    endpoint: {endpoint}
    security: {security}
{identity}    publishing_interval_s: 0.1
    sampling_interval_s: 0.1
    watchdog_s: 0.5
    timeout_s: 2
    expected_interval_s: 1
    signals:
      temperature: {{node: "nsu=urn:kartech:sim:furnace;s=furnace-01.Temperature", unit: degC}}
      door_open:   {{path: Objects/furnace-01/DoorOpen}}
      state:       {{path: Objects/furnace-01/State}}
"""


def site(machines: str, *, influx: str = "", env: dict[str, str] | None = None) -> SiteConfig:
    text = f"""
site: {{id: s{uuid.uuid4().hex[:6]}, name: Test}}
storage:
  local_history: {{enabled: false}}
  queue_size: 1000
{influx}
machines:
{machines}"""
    result = check_text(text, "test.yaml", SPECS, env or {})
    assert result.problems == [], result.problems
    assert result.config is not None
    return result.config


class Tap:
    """Records every reading the pipeline sees (wraps the live view's apply)."""

    def __init__(self, rt: Runtime) -> None:
        self.readings: list[Reading] = []
        update = rt.values.apply

        def tapped(readings: Any) -> None:
            self.readings.extend(readings)
            update(readings)

        rt.values.apply = tapped  # type: ignore[method-assign]

    def of(self, machine: str, signal: str, since_ns: int = 0) -> list[Reading]:
        return [r for r in self.readings if r.machine == machine and r.signal == signal and r.receive_ns >= since_ns]


@asynccontextmanager
async def gateway(cfg: SiteConfig) -> AsyncIterator[tuple[Runtime, Tap]]:
    with tempfile.TemporaryDirectory(prefix="kartech-opcua-test-") as data_dir:
        async with _gateway(cfg, Path(data_dir)) as running:
            yield running


@asynccontextmanager
async def _gateway(cfg: SiteConfig, data_dir: Path) -> AsyncIterator[tuple[Runtime, Tap]]:
    rt = Runtime(cfg, SPECS, serve_api=False, data_dir=data_dir)
    tap = Tap(rt)
    async with running(rt):
        yield rt, tap


def ctx_of(rt: Runtime, machine: str) -> Any:
    return next(c for c in rt.contexts if machine in c.machine_ids)


def opcua_machine(cfg: SiteConfig) -> OpcuaMachine:
    m = cfg.machines[0]
    assert isinstance(m, OpcuaMachine)
    return m


def harness(cfg: SiteConfig) -> DriverHarness:
    """The driver of the site's one machine with the supervisor's context, for running it directly (no retries)."""
    return DriverHarness(OpcuaDriver(opcua_machine(cfg)), machine_metas(cfg))


# --- tests -------------------------------------------------------------------------------------------------------
async def test_values_land_in_influxdb_with_their_quality(sim: OpcuaSimServer, influxdb: InfluxDB1) -> None:
    db = f"t_{uuid.uuid4().hex[:10]}"
    influx = (f'  influxdb: {{version: 1, url: "{influxdb.url}", database: {db}, batch_size: 500, '
              "flush_interval_s: 0.2}")
    cfg = site(cnc_yaml(sim.endpoint) + furnace_yaml(sim.endpoint), influx=influx)
    async with gateway(cfg) as (rt, tap):
        await until(lambda: len(tap.of("furnace-01", "temperature")) >= 3 and len(tap.of("cnc-01", "program")) >= 1,
                    timeout_s=15.0)
        sim.set_bad("furnace-01", "temperature", "BadSensorFailure")
        try:
            await until(lambda: any(r.quality == "bad" for r in tap.of("furnace-01", "temperature")), timeout_s=15.0)
            t_bad = time.time_ns()
            await until(lambda: len(tap.of("furnace-01", "temperature", t_bad)) >= 2, timeout_s=15.0)
        finally:
            sim.set_bad("furnace-01", "temperature", None)
        await until(lambda: any(r.quality == "good" for r in tap.of("furnace-01", "temperature", t_bad)),
                    timeout_s=15.0)
        await until(lambda: rt.metrics.total("readings_written_total") >= len(tap.readings) - 50, timeout_s=15.0)
        cnc = rt.stage.machine("cnc-01")
        assert cnc["state"] in ("running", "idle", "maintenance")
        assert cnc["signals"]["program"]["value"] in PROGRAMS
    bad = [r for r in tap.of("furnace-01", "temperature") if r.quality == "bad"]
    assert bad
    assert all(r.value is None for r in bad)  # the simulator sent a number with the bad status
    rows = influxdb.query('SELECT temperature, temperature_quality FROM "furnace"', db=db)[0]
    values = rows["values"]
    assert any(v[1] is not None and v[2] is None for v in values)  # good: a number, no quality field
    bad_rows = [v for v in values if v[2] == "bad"]
    assert bad_rows
    assert all(v[1] is None for v in bad_rows)
    cnc_rows = influxdb.query('SELECT spindle_speed, program, part_count, "state" FROM "cnc"', db=db)[0]
    first = dict(zip(cnc_rows["columns"], cnc_rows["values"][0], strict=True))
    assert first["program"] in PROGRAMS
    assert isinstance(first["part_count"], int)
    assert first["state"] in ("running", "idle", "maintenance", "offline")


async def test_missing_node_is_named_and_the_other_signals_keep_flowing(
        sim: OpcuaSimServer, caplog: pytest.LogCaptureFixture) -> None:
    extra = '      ghost: {node: "s=cnc-01.Spindle.Ghost"}\n      lost: {path: Objects/cnc-01/NoSuchThing}\n'
    caplog.set_level(logging.ERROR, logger="drivers.opcua.driver")
    async with gateway(site(cnc_yaml(sim.endpoint, extra=extra))) as (rt, tap):
        await until(lambda: len(tap.of("cnc-01", "spindle_speed")) >= 3, timeout_s=15.0)
    messages = [r.getMessage() for r in caplog.records]
    assert (f'opcua:cnc-01: machine "cnc-01" signal "ghost": node s=cnc-01.Spindle.Ghost '
            f"(nsu={CNC_NS};s=cnc-01.Spindle.Ghost) does not exist on {sim.endpoint} (BadNodeIdUnknown); "
            "the other signals are read") in messages
    assert any('signal "lost": Objects/cnc-01/NoSuchThing: path Objects/cnc-01/NoSuchThing: no \'NoSuchThing\' '
               "under Objects/cnc-01" in m for m in messages)
    assert not tap.of("cnc-01", "ghost")
    assert {lbl["reason"] for lbl, _ in rt.metrics.series("bad_input_total")} == {"unknown_node"}


async def test_server_restart_shows_offline_then_values_resume(own_sim: OpcuaSimServer) -> None:
    async with gateway(site(cnc_yaml(own_sim.endpoint))) as (rt, tap):
        await until(lambda: len(tap.of("cnc-01", "spindle_speed")) >= 2, timeout_s=15.0)
        ctx = ctx_of(rt, "cnc-01")
        await asyncio.to_thread(own_sim.go_down)
        await until(lambda: not ctx.is_connected, timeout_s=5)  # detected within watchdog_s + timeout_s
        assert rt.stage.machine("cnc-01")["state"] == "offline"
        down_at = time.time_ns()
        await asyncio.to_thread(own_sim.come_up)
        await until(lambda: ctx.is_connected and len(tap.of("cnc-01", "spindle_speed", down_at)) >= 3, timeout_s=20)
        assert rt.metrics.total("driver_reconnects_total") >= 1
        assert rt.stage.machine("cnc-01")["state"] != "offline"


async def test_restart_with_namespaces_in_another_order_maps_to_the_same_signals(own_sim: OpcuaSimServer) -> None:
    cfg = site(cnc_yaml(own_sim.endpoint) + furnace_yaml(own_sim.endpoint))
    async with gateway(cfg) as (rt, tap):
        await until(lambda: len(tap.of("cnc-01", "program")) >= 1 and len(tap.of("furnace-01", "state")) >= 1,
                    timeout_s=15.0)
        drivers = {c.name: c for c in rt.contexts}
        assert set(drivers) == {"opcua:cnc-01", "opcua:furnace-01"}
        before = _ns_index(rt, "cnc-01")
        t0 = time.time_ns()
        await asyncio.to_thread(own_sim.restart, reorder_namespaces=True)
        await until(lambda: len(tap.of("cnc-01", "program", t0)) >= 1 and len(tap.of("furnace-01", "state", t0)) >= 1
                    and len(tap.of("cnc-01", "spindle_speed", t0)) >= 1, timeout_s=20)
        assert _ns_index(rt, "cnc-01") != before
        assert tap.of("cnc-01", "program", t0)[-1].value in PROGRAMS
        assert tap.of("furnace-01", "state", t0)[-1].value in ("running", "idle")
        assert isinstance(tap.of("furnace-01", "door_open", t0)[-1].value, bool)


def _ns_index(rt: Runtime, machine: str) -> int:
    driver = next(d for d in _drivers(rt) if d.machine.id == machine)
    return driver.namespaces.index(CNC_NS)


def _drivers(rt: Runtime) -> list[OpcuaDriver]:
    # the runtime keeps contexts, not drivers: the supervised coroutines hold them
    out: list[OpcuaDriver] = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        driver = frame.f_locals.get("driver") if frame is not None else None
        if isinstance(driver, OpcuaDriver):
            out.append(driver)
    return out


@pytest.mark.parametrize(("policy", "mode"), [
    ("Basic256Sha256", "SignAndEncrypt"),
    ("Aes128_Sha256_RsaOaep", "Sign"),
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
])
async def test_secure_channel_with_username(secure_sim: OpcuaSimServer, pki: Pki, tmp_path: Path,
                                            policy: str, mode: str) -> None:
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "sim.der").write_bytes(pki.server_cert)
    security = (f"{{policy: {policy}, mode: {mode}, certificate: {pki.client_cert}, "
                f"private_key: {pki.client_key}, trust_dir: {trust}}}")
    identity = "    identity: {type: username, username: gateway, password: \"${FURNACE_PW}\"}\n"
    cfg = site(furnace_yaml(secure_sim.endpoint, security=security, identity=identity),
               env={"FURNACE_PW": PASSWORD})
    async with gateway(cfg) as (_rt, tap):
        await until(lambda: len(tap.of("furnace-01", "temperature")) >= 2, timeout_s=15.0)
    wrong = site(furnace_yaml(secure_sim.endpoint, security=security, identity=identity), env={"FURNACE_PW": "nope"})
    h = harness(wrong)
    with pytest.raises(DriverUnavailable, match=r"cannot connect to .*Bad"):
        async with asyncio.timeout(15):
            await h.driver.run(h.ctx)


async def test_untrusted_server_certificate_is_refused(secure_sim: OpcuaSimServer, pki: Pki, tmp_path: Path) -> None:
    trust = tmp_path / "pki" / "trusted"
    security = (f"{{policy: Basic256Sha256, mode: SignAndEncrypt, certificate: {pki.client_cert}, "
                f"private_key: {pki.client_key}, trust_dir: {trust}}}")
    identity = "    identity: {type: username, username: gateway, password: \"${FURNACE_PW}\"}\n"
    cfg = site(furnace_yaml(secure_sim.endpoint, security=security, identity=identity), env={"FURNACE_PW": PASSWORD})
    h = harness(cfg)
    with pytest.raises(UntrustedServer) as err:
        async with asyncio.timeout(15):
            await h.driver.run(h.ctx)
    rejected = list((tmp_path / "pki" / "rejected").iterdir())
    assert len(rejected) == 1
    assert str(err.value).startswith(f"server certificate of {secure_sim.endpoint} is not trusted "
                                     "(O=Kartech,CN=Kartech sim, SHA-1 thumbprint ")
    assert str(err.value).endswith(f"; it was saved as {rejected[0]} — if it is the right server, move it into "
                                   f"{trust}/")
    assert not h.ctx.is_connected
    # trust on first use, when configured, connects and keeps the certificate
    tofu = site(furnace_yaml(secure_sim.endpoint, security=security.replace("}", ", trust_on_first_use: true}"),
                             identity=identity), env={"FURNACE_PW": PASSWORD})
    async with gateway(tofu) as (_rt, tap):
        await until(lambda: len(tap.of("furnace-01", "temperature")) >= 1, timeout_s=15.0)
    assert len(list(trust.iterdir())) == 1


async def test_a_hung_server_is_detected_and_stalls_no_other_machine(sim: OpcuaSimServer,
                                                                      own_sim: OpcuaSimServer) -> None:
    cfg = site(cnc_yaml(own_sim.endpoint) + furnace_yaml(sim.endpoint))
    async with gateway(cfg) as (rt, tap):
        hung = ctx_of(rt, "cnc-01")
        t0 = time.monotonic()
        own_sim.stall(6.0)
        stalled_ns = time.time_ns()
        await until(lambda: not hung.is_connected, timeout_s=5)
        detected_s = time.monotonic() - t0
        await until(lambda: len(tap.of("furnace-01", "temperature", stalled_ns)) >= 10, timeout_s=5)  # still flowing
        assert ctx_of(rt, "furnace-01").is_connected
        assert detected_s < 0.5 + 2 * 2 + 1  # watchdog_s + request timeouts, with margin
        await until(lambda: hung.is_connected and len(tap.of("cnc-01", "spindle_speed", stalled_ns)) >= 1, timeout_s=25)


async def test_poll_mode_reads_every_interval(sim: OpcuaSimServer) -> None:
    options = "    read: poll\n    poll_interval_s: 0.2\n"
    async with gateway(site(cnc_yaml(sim.endpoint, options=options))) as (_rt, tap):
        await until(lambda: len(tap.of("cnc-01", "part_count")) >= 4, timeout_s=15.0)
    counts = tap.of("cnc-01", "part_count")
    assert all(isinstance(r.value, int) for r in counts)
    assert len({r.receive_ns for r in counts}) >= 4


async def test_node_ids_of_the_simulator_are_documented() -> None:
    assert node_id("cnc", "cnc-01", "spindle_speed") == f"nsu={CNC_NS};s=cnc-01.Spindle.Speed"
