"""PrusaLink driver against the PrusaLink simulator over real HTTP on loopback, under the real supervisor.

Every test ends by checking that the printer received nothing but GETs (the driver is read-only).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kit.driver import DriverHarness, supervised

from drivers.prusalink.config import PrusaLinkMachine
from drivers.prusalink.driver import PrusaLinkDriver
from gateway.machines import MachineMeta
from simulators.http_sim import HttpSim
from simulators.prusalink_sim import PRINT_FILES, PrusaLinkPrinter

PASSWORD = "mk4-digest-pass"
Sim = HttpSim[PrusaLinkPrinter]  # the simulated device is `sim.app`


def machine(url: str, mid: str = "mk4-01", **kw: Any) -> PrusaLinkMachine:
    kw.setdefault("password", PASSWORD)
    return PrusaLinkMachine(id=mid, name=f"Prusa MK4 {mid}", kind="printer", driver="prusalink", url=url,
                            poll_interval_s=0.5, timeout_s=1.0, reconnect_max_s=1.0, expected_interval_s=1, **kw)


def meta(m: PrusaLinkMachine) -> MachineMeta:
    return MachineMeta(id=m.id, name=m.name, kind=m.kind, driver="prusalink", site="test",
                       expected_interval_s=m.expected_interval_s)


def start_sim(**kw: Any) -> Sim:
    kw.setdefault("password", PASSWORD)
    kw.setdefault("time_scale", 60.0)
    kw.setdefault("job_minutes", (3.0, 3.0))  # 3 s of wall clock per print
    kw.setdefault("gap_minutes", (0.5, 0.5))
    sim = HttpSim(PrusaLinkPrinter(**kw), name="prusalink")
    sim.start()
    return sim


@pytest.fixture
def sim() -> Iterator[Sim]:
    s = start_sim(nonce_lifetime_s=1.0)  # nonces go stale during the test: the driver must follow
    yield s
    s.stop()
    assert s.app.writes == 0, "the driver sent something other than GET"


@asynccontextmanager
async def reading(m: PrusaLinkMachine) -> AsyncIterator[DriverHarness]:
    async with supervised(PrusaLinkDriver(m), [meta(m)]) as h:
        yield h


async def test_values_states_and_jobs_arrive_mapped(sim: Sim) -> None:
    m = machine(sim.url)
    async with reading(m) as h:
        events = h.lab.subscribe()
        await h.wait_for("a job's file name", lambda: h.values("job_file"), timeout_s=10)
        await h.wait_for("a completed job", lambda: any(
            r.value == "FINISHED" for r in h.of(m.id, "printer_state")), timeout_s=15)
        await h.wait_for("the next job", lambda: len({v for v in h.values("job_id") if v}) >= 2, timeout_s=15)
    files = {v for v in h.values("job_file") if v}
    assert files <= set(PRINT_FILES)
    assert files
    assert {"PRINTING", "FINISHED"} <= set(h.values("printer_state"))
    assert {"running", "idle"} <= set(h.values("state"))
    nozzle = [v for v in h.values("nozzle_temp") if isinstance(v, float)]
    assert max(nozzle) > 200
    assert next(r.unit for r in h.of(m.id, "nozzle_temp")) == "degC"
    assert set(h.values("nozzle_target")) >= {0.0, 215.0}
    progress = [v for v in h.values("progress_pct") if isinstance(v, float)]
    assert 0 < max(progress) <= 100.0
    assert all(type(v) is int for v in h.values("remaining_s") + h.values("elapsed_s"))
    assert h.values("serial_number") == ["10589-3742441633124"]
    assert h.values("nozzle_diameter_mm") == [0.4]
    # the state engine turned them into jobs, named after the printer's long file name
    seen: list[dict[str, Any]] = []
    while not events.empty():
        msg = events.get_nowait()
        if msg["type"] == "event" and msg["event"]["type"] in ("job_start", "job_end"):
            seen.append(msg["event"])
    ends = [e for e in seen if e["type"] == "job_end"]
    assert ends
    assert ends[0]["data"]["result"] == "completed"
    assert ends[0]["data"]["job"] in PRINT_FILES
    assert sim.app.digest is not None
    assert sim.app.digest.challenges >= 2
    assert h.ctx.restarts == 0


async def test_no_job_is_204_and_no_job_fields() -> None:
    sim = start_sim(time_scale=1.0, gap_minutes=(60.0, 60.0))  # idle for an hour
    try:
        m = machine(sim.url)
        async with reading(m) as h:
            await h.wait_for("three polls", lambda: len(h.values("printer_state")) >= 3)
        assert set(h.values("printer_state")) == {"IDLE"}
        assert set(h.values("state")) == {"idle"}
        assert h.values("job_file") == []
        assert h.values("job_id") == []
        assert h.state() == "idle"
    finally:
        sim.stop()


async def test_api_key_header_works() -> None:
    sim = start_sim()
    try:
        m = machine(sim.url, auth="api_key", password=None, api_key=PASSWORD)
        async with reading(m) as h:
            await h.wait_for("temperatures", lambda: h.values("bed_temp"))
        assert sim.app.digest is not None
        assert sim.app.digest.challenges == 0
    finally:
        sim.stop()


async def test_wrong_password_is_said_once_and_other_printers_keep_being_read(
        sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    good, bad = machine(sim.url, "mk4-01"), machine(sim.url, "mk4-02", password="not-the-password")
    async with supervised(PrusaLinkDriver(bad), [meta(bad)]) as hb, reading(good) as hg:
        assert sim.app.digest is not None
        await hb.wait_for("five refused polls", lambda: sim.app.digest.challenges >= 10)  # type: ignore[union-attr]
        await hg.wait_for("the good printer's values", lambda: len(hg.values("nozzle_temp")) >= 3)
        assert not hb.lab.values.get(bad.id).connected
        assert hb.ctx.last_error.startswith('printer "mk4-02" (Prusa MK4 mk4-02) at http://127.0.0.1:')
    said = [r.getMessage() for r in caplog.records if "refused the gateway's credentials" in r.getMessage()]
    assert len(said) == 1, said
    assert "mk4-02" in said[0]
    assert "HTTP 401" in said[0]
    assert "Settings > Network > PrusaLink" in said[0]
    assert hb.values("nozzle_temp") == []
    assert hb.ctx.restarts == 0


async def test_printer_going_away_and_back(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m = machine(sim.url)
    async with reading(m) as h:
        await h.wait_for("values", lambda: h.values("bed_temp"))
        sim.go_away()
        await h.wait_for("offline", lambda: "offline" in h.values("state"))
        assert h.state() == "offline"
        await asyncio.sleep(2.5)  # a few failed attempts while it is switched off
        sim.come_back()
        back = time.time_ns()
        took = await h.wait_for("fresh values", lambda: h.of(m.id, "bed_temp", since_ns=back), timeout_s=5)
        assert took < 5
        await h.wait_for("running again", lambda: h.state() != "offline")
    lost = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    recovered = [r.getMessage() for r in caplog.records if "recovered after" in r.getMessage()]
    assert len(lost) == 1, lost
    assert "mk4-01" in lost[0]
    assert "cannot be reached" in lost[0]
    assert len(recovered) == 1, recovered


@pytest.mark.parametrize("fault", ["malformed_json", "unexpected_shape", "unknown_state"])
async def test_bad_answers_are_counted_and_reading_goes_on(sim: Sim, fault: str) -> None:
    m = machine(sim.url)
    async with reading(m) as h:
        await h.wait_for("values", lambda: h.values("bed_temp"))
        sim.app.corrupt = fault  # type: ignore[assignment]
        await h.wait_for(f"{fault} counted", lambda: h.bad(fault) >= 2)
        if fault == "unknown_state":  # the rest of the answer is still read
            n = len(h.values("bed_temp"))
            await h.wait_for("temperatures meanwhile", lambda: len(h.values("bed_temp")) > n)
        sim.app.corrupt = None
        n = len(h.values("printer_state"))
        await h.wait_for("good answers again", lambda: len(h.values("printer_state")) > n)
        assert h.ctx.restarts == 0
        assert h.ctx.is_connected


async def test_a_printer_that_accepts_but_never_answers_times_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with socket.socket() as hung:  # listens, never accepts: the kernel completes the handshake, nobody answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        m = machine(f"http://127.0.0.1:{hung.getsockname()[1]}")
        async with reading(m) as h:
            t0 = time.monotonic()
            ticks = 0

            async def count() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            counter = asyncio.create_task(count())
            await h.wait_for("the timeout", lambda: h.ctx.last_error, timeout_s=5)
            took = time.monotonic() - t0
            counter.cancel()
    assert 1.0 <= took < 3.0  # timeout_s is 1
    assert ticks >= took / 0.05 * 0.5  # the event loop kept running meanwhile
    said = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(said) == 1
    assert "did not answer in time" in said[0]
