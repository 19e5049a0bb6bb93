"""Bambu Lab LAN driver end to end over real TLS sockets: simulated printers (simulators/bambu_sim.py, each an
amqtt broker behind a TLS listener with a CA and a printer certificate made for the test) read by the driver under
the real supervisor, and once by a whole gateway for the alert an HMS code raises."""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.driver import DriverHarness, supervised
from kit.poll import until
from kit.runtime import running

from drivers.bambu.config import BambuMachine, PrinterTls
from drivers.bambu.driver import BambuDriver, pushall
from gateway.config.loader import check_text
from gateway.errors import DriverUnavailable
from gateway.machines import MachineMeta
from gateway.registry import discover
from gateway.runtime import Runtime
from gateway.supervisor import backoff_of
from simulators.bambu_sim import SPOOLS, BambuLab, Series, make_pki, new_lab

SERIAL = "01P00A411800456"
CODE = "31415926"
RUNAWAY = (0x03000200, 0x00010003)  # HMS_0300_0200_0001_0003, fatal
TECH = "t" * 24


def fast_lab(series: Series = "P1", **kw: Any) -> BambuLab:
    """One printer that prints a short job quickly: 30x model time, a report every 0.2 s."""
    args: dict[str, Any] = {"interval_s": 0.2, "time_scale": 30.0, "job_minutes": (0.5, 0.6),
                            "gap_minutes": (0.2, 0.3), "start_progress": False, "error_probability": 0.0}
    return new_lab([("p1s-01", SERIAL, CODE)], series=series, **(args | kw))


@pytest.fixture
def lab() -> Iterator[BambuLab]:
    with fast_lab() as lab:
        yield lab


def machine(lab: BambuLab, *, code: str = CODE, tls: PrinterTls | None = None) -> BambuMachine:
    p = lab.printer("p1s-01")
    return BambuMachine(id="p1s-01", name="P1S", kind="printer", driver="bambu", host="127.0.0.1", port=p.port,
                        serial=SERIAL, access_code=code, tls=tls or PrinterTls(ca_file=str(lab.pki.ca_file)),
                        expected_interval_s=1.0)


@asynccontextmanager
async def reading(m: BambuMachine) -> AsyncIterator[DriverHarness]:
    meta = MachineMeta(id=m.id, name=m.name, kind=m.kind, driver="bambu", site="test",
                       expected_interval_s=m.expected_interval_s)
    driver = BambuDriver(m, "test")
    async with supervised(driver, [meta], backoff=backoff_of(driver.retry)) as h:
        yield h


def last(h: DriverHarness, signal: str) -> object:
    got = h.values(signal)
    return got[-1] if got else None


async def test_values_state_words_and_the_job_arrive_mapped_from_merged_partial_reports(lab: BambuLab) -> None:
    p = lab.printer("p1s-01")
    async with reading(machine(lab)) as h:
        await h.wait_for("the first report", lambda: last(h, "state") is not None, 10)
        # the connect asked for a full report, exactly as the printers expect it
        assert p.requests[0] == json.loads(pushall(1)) == {
            "pushing": {"sequence_id": "1", "command": "pushall", "version": 1, "push_target": 1}}
        await h.wait_for("a whole job: start, then finish", lambda: "finish" in h.values("job_event"), 30)
        await h.wait_for("the state stage seeing it idle again", lambda: h.state() == "idle", 10)
    assert p.partial_reports > 10, "the P1 printer sent no deltas; merging was not exercised"
    assert list(h.values("job_event")) == ["start", "finish"]
    assert h.values("job_result") == ["completed"]
    job = h.values("job_file")[0]
    assert isinstance(job, str)
    assert job
    assert "." not in job
    states = [s for i, s in enumerate(h.values("state")) if i == 0 or h.values("state")[i - 1] != s]
    assert states == ["idle", "running", "idle"]
    assert set(h.values("gcode_state")) >= {"IDLE", "PREPARE", "RUNNING", "FINISH"}
    assert max(v for v in h.values("nozzle_target") if isinstance(v, float)) == 215.0
    assert max(v for v in h.values("progress_pct") if isinstance(v, float)) == 100.0
    assert max(v for v in h.values("layer") if isinstance(v, int)) > 1
    assert all(isinstance(v, int) and v % 60 == 0 for v in h.values("remaining_s"))  # minutes, as seconds
    # every report, full or delta, gave the whole printer: each batch carries every temperature and the state
    batches: dict[int, set[str]] = {}
    for r in h.readings:
        batches.setdefault(r.receive_ns, set()).add(r.signal)
    assert all({"nozzle_temp", "bed_temp", "bed_target", "state", "hms", "filament_type", "filament_color",
                "filament_remain_pct"} <= s for s in batches.values())
    # the AMS: the loaded spool's type and colour as a pair the simulated AMS holds, and what is left on it (the
    # P1 sends `ams` only in the deltas where it changed, so most batches come from the held trays)
    spools = {(kind, "#" + color[:6]) for kind, color, *_ in SPOOLS}
    colors = {r.receive_ns: r.value for r in h.readings if r.signal == "filament_color"}
    pairs = {(r.value, colors[r.receive_ns]) for r in h.readings if r.signal == "filament_type"}
    assert pairs
    assert pairs <= spools
    remain = h.values("filament_remain_pct")
    assert remain
    assert all(isinstance(v, int) and 0 <= v <= 100 for v in remain)
    assert {r.unit for r in h.readings if r.signal == "filament_remain_pct"} == {"%"}
    assert h.bad("malformed_json") == 0
    assert h.bad("unexpected_shape") == 0
    assert [r["pushing"]["command"] for r in p.requests] == ["pushall"]  # read-only: nothing else was asked


async def test_pushall_is_asked_again_at_the_configured_interval(lab: BambuLab) -> None:
    p = lab.printer("p1s-01")
    m = machine(lab).model_copy(update={"pushall_interval_s": 10.0})
    async with reading(m) as h:
        await h.wait_for("a second pushall", lambda: len(p.requests) >= 2, 15)
        assert [r["pushing"]["sequence_id"] for r in p.requests[:2]] == ["1", "2"]
        assert h.ctx.is_connected


async def test_a_certificate_from_another_ca_is_refused_before_the_access_code_is_sent(lab: BambuLab) -> None:
    other = make_pki(Path(tempfile.mkdtemp(prefix="kartech-bambu-other-")), [SERIAL], ca_name="Someone else")
    m = machine(lab, tls=PrinterTls(ca_file=str(other.ca_file)))
    with pytest.raises(DriverUnavailable) as err:
        await BambuDriver(m, "test").run(DriverHarness(BambuDriver(m, "test"), []).ctx)
    port = lab.printer("p1s-01").port
    assert str(err.value).startswith(
        f'printer "p1s-01" ({SERIAL}) at 127.0.0.1:{port}: its TLS certificate does not match the CA in '
        f"'{other.ca_file}' and the serial {SERIAL} as its name: ")
    assert str(err.value).endswith("; the access code was not sent")
    assert lab.printer("p1s-01").sessions == 0  # no TLS session: no CONNECT could have carried the code
    assert lab.printer("p1s-01").connects == []


async def test_a_certificate_naming_another_serial_is_refused(lab: BambuLab) -> None:
    m = machine(lab).model_copy(update={"serial": "01P00A411800999"})
    with pytest.raises(DriverUnavailable, match=r"does not match .* the serial 01P00A411800999 as its name: "
                       "Hostname mismatch"):
        await BambuDriver(m, "test").run(DriverHarness(BambuDriver(m, "test"), []).ctx)
    assert lab.printer("p1s-01").sessions == 0


async def test_a_pinned_fingerprint_admits_only_that_certificate(lab: BambuLab) -> None:
    wrong = "ab" * 32
    m = machine(lab, tls=PrinterTls(fingerprint_sha256=wrong))
    with pytest.raises(DriverUnavailable, match=r"does not match the pinned tls\.fingerprint_sha256: certificate "
                       r"fingerprint mismatch: the printer's certificate has SHA-256 [0-9a-f]{64}, not the pinned "
                       "one; the access code was not sent"):
        await BambuDriver(m, "test").run(DriverHarness(BambuDriver(m, "test"), []).ctx)
    assert lab.printer("p1s-01").connects == []  # the handshake ended, the code was never sent
    right = machine(lab, tls=PrinterTls(fingerprint_sha256=lab.pki.fingerprint(SERIAL)))
    async with reading(right) as h:
        await h.wait_for("a report over the pinned connection", lambda: last(h, "nozzle_temp") is not None, 10)
    assert lab.printer("p1s-01").connects == ["bblp"]


async def test_a_wrong_access_code_is_one_clear_error_naming_the_printer_retried_with_backoff(
        lab: BambuLab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.supervisor")
    async with reading(machine(lab, code="00000000")) as h:
        await h.wait_for("three refused attempts", lambda: h.ctx.backoff.attempt >= 3, 20)
        port = lab.printer("p1s-01").port
        assert h.ctx.last_error == (
            f'printer "p1s-01" ({SERIAL}) at 127.0.0.1:{port} refused the connection (CONNACK 5: not authorised); '
            "check access_code (the printer's LAN access code, Settings > Network on its screen; it changes when "
            "LAN mode is switched off and on)")
        assert not h.ctx.is_connected
        assert h.readings == []
    logged = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert logged == [f"bambu:p1s-01 unavailable: {h.ctx.last_error}; retrying with backoff"]
    assert lab.printer("p1s-01").requests == []
    assert set(lab.printer("p1s-01").connects) == {"bblp"}
    assert len(lab.printer("p1s-01").connects) >= 3


async def test_a_printer_switched_off_and_on_gives_fresh_values_within_5_s_of_its_return(lab: BambuLab) -> None:
    async with reading(machine(lab)) as h:
        await h.wait_for("the first reports", lambda: last(h, "nozzle_temp") is not None, 10)
        lab.away("p1s-01")
        await h.wait_for("the printer seen gone", lambda: not h.ctx.is_connected, 10)
        await h.wait_for("a few failed reconnects", lambda: h.ctx.backoff.attempt >= 3, 20)
        lab.back("p1s-01")
        back_ns = time.time_ns()
        took = await h.wait_for("a fresh reading", lambda: h.of("p1s-01", "nozzle_temp", back_ns), 10)
        assert took < 5.0
        assert h.ctx.is_connected
        assert [r["pushing"]["sequence_id"] for r in lab.printer("p1s-01").requests][-1] != "1"  # asked again


async def test_malformed_and_unexpected_payloads_are_counted_and_reading_goes_on(lab: BambuLab) -> None:
    async with reading(machine(lab)) as h:
        await h.wait_for("the first reports", lambda: last(h, "nozzle_temp") is not None, 10)
        for raw in (b'{"print": {"nozzle_temper": 21', b"\xff\xfe{}", b'["print"]', b'{"print": {"hms": 5}}',
                    b'{"print": {"bed_temper": "warm"}}', b'{"print": {"gcode_state": "LEVITATING"}}'):
            lab.publish_raw("p1s-01", raw)
        await h.wait_for("the bad input counted", lambda: h.bad("malformed_json") == 2 and
                         h.bad("unexpected_shape") == 2 and h.bad("not_a_number") == 1 and
                         h.bad("unknown_state") == 1, 10)
        since = time.time_ns()
        await h.wait_for("good reports after the bad ones", lambda: h.of("p1s-01", "bed_temp", since), 5)
        assert h.ctx.restarts == 0
        assert h.ctx.is_connected


def gateway_site(lab: BambuLab) -> Any:
    p = lab.printer("p1s-01")
    text = f"""
site: {{id: bambu{uuid.uuid4().hex[:6]}, name: Test}}
storage: {{local_history: {{enabled: false}}}}
api: {{port: 0}}
machines:
  - id: p1s-01
    name: P1S
    kind: printer
    lab: printfarm
    driver: bambu
    host: 127.0.0.1
    port: {p.port}
    serial: {SERIAL}
    access_code: ${{P1S_CODE}}
    tls: {{ca_file: "{lab.pki.ca_file}"}}
    expected_interval_s: 1
"""
    result = check_text(text, "test.yaml", discover(), {"P1S_CODE": CODE})
    assert result.problems == [], [str(p) for p in result.problems]
    return result.config


async def test_a_fatal_hms_code_reaches_the_gateway_as_an_error_with_its_code_and_raises_the_alert(
        tmp_path: Path) -> None:
    with fast_lab(time_scale=1.0) as lab:
        rt = Runtime(gateway_site(lab), discover(), data_dir=tmp_path, tokens={TECH: ("timur", "technician")})
        async with running(rt) as rt, httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}",
                                                        headers={"Authorization": f"Bearer {TECH}"}) as api:
            async def state() -> Any:
                return (await api.get("/api/v1/machines/p1s-01")).json()

            await until(lambda: rt.stage.machine("p1s-01")["state"] == "idle", "the printer idle", 10)
            lab.set_hms("p1s-01", [RUNAWAY])

            async def in_error() -> bool:
                m = await state()
                return bool(m["state"] == "error")

            await until(in_error, "the printer in error", 10)
            signals = (await state())["signals"]
            assert signals["hms"]["value"] == "HMS_0300_0200_0001_0003"
            assert signals["error"]["value"] == "HMS_0300_0200_0001_0003 (fatal)"

            async def alerted() -> list[dict[str, Any]]:
                return [a for a in (await api.get("/api/v1/alerts")).json()
                        if a["rule"] == "machine-error" and a["machine"] == "p1s-01"]

            await until(alerted, "the machine-error alert", 10)
            # and the code itself is an alert of its own, carrying it (drivers/bambu: hms)
            hms = [a for a in (await api.get("/api/v1/alerts")).json()
                   if a["rule"] == "printer-hms" and a["machine"] == "p1s-01"]
            assert [a["value"] for a in hms] == ["HMS_0300_0200_0001_0003"]
            lab.set_hms("p1s-01", [])
            await until(lambda: rt.stage.machine("p1s-01")["state"] == "idle", "the error cleared", 10)
