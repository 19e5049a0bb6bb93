"""OctoPrint driver against the OctoPrint simulator over real HTTP on loopback, under the real supervisor.

Every test ends by checking that OctoPrint received nothing but GETs (the driver is read-only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kit.driver import DriverHarness, supervised

from drivers.octoprint.config import OctoPrintMachine
from drivers.octoprint.driver import OctoPrintDriver
from gateway.machines import MachineMeta
from simulators.http_sim import HttpSim
from simulators.octoprint_sim import PRINT_FILES, OctoPrintServer

KEY = "0123456789ABCDEF0123456789ABCDEF"
Sim = HttpSim[OctoPrintServer]  # the simulated device is `sim.app`


def machine(url: str, mid: str = "ender-01", api_key: str = KEY) -> OctoPrintMachine:
    return OctoPrintMachine(id=mid, name=f"Ender-3 {mid}", kind="printer", driver="octoprint", url=url,
                            api_key=api_key, poll_interval_s=0.5, timeout_s=1.0, reconnect_max_s=1.0,
                            expected_interval_s=1)


@asynccontextmanager
async def reading(m: OctoPrintMachine) -> AsyncIterator[DriverHarness]:
    meta = MachineMeta(id=m.id, name=m.name, kind=m.kind, driver="octoprint", site="test",
                       expected_interval_s=m.expected_interval_s)
    async with supervised(OctoPrintDriver(m), [meta]) as h:
        yield h


def start_sim(**kw: Any) -> Sim:
    kw.setdefault("api_key", KEY)
    kw.setdefault("time_scale", 60.0)
    kw.setdefault("job_minutes", (3.0, 3.0))
    kw.setdefault("gap_minutes", (0.5, 0.5))
    sim = HttpSim(OctoPrintServer(**kw), name="octoprint")
    sim.start()
    return sim


@pytest.fixture
def sim() -> Iterator[Sim]:
    s = start_sim()
    yield s
    s.stop()
    assert s.app.writes == 0, "the driver sent something other than GET"


async def test_values_states_and_jobs_arrive_mapped(sim: Sim) -> None:
    m = machine(sim.url)
    async with reading(m) as h:
        events = h.lab.subscribe()
        await h.wait_for("a completed job", lambda: "completed" in h.values("job_event"), timeout_s=15)
        await h.wait_for("the next job", lambda: h.values("job_event").count("start") >= 2, timeout_s=15)
    assert set(h.values("job_file")) <= set(PRINT_FILES)
    assert {"Printing", "Operational"} <= set(h.values("printer_state"))
    assert {"running", "idle"} <= set(h.values("state"))
    nozzle = [v for v in h.values("nozzle_temp") if isinstance(v, float)]
    assert max(nozzle) > 190
    assert {r.unit for r in h.of(m.id, "bed_temp")} == {"degC"}
    assert max(v for v in h.values("progress_pct") if isinstance(v, float)) == 100.0
    assert all(type(v) is int for v in h.values("remaining_s") + h.values("elapsed_s"))
    ends = []
    while not events.empty():
        msg = events.get_nowait()
        if msg["type"] == "event" and msg["event"]["type"] == "job_end":
            ends.append(msg["event"]["data"])
    assert ends
    assert ends[0]["result"] == "completed"
    assert ends[0]["job"] in PRINT_FILES
    assert h.ctx.restarts == 0


async def test_409_is_a_state_not_an_error(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    m = machine(sim.url)
    async with reading(m) as h:
        await h.wait_for("values", lambda: h.values("bed_temp"))
        sim.app.connected = False  # OctoPrint runs, the printer's USB cable is out
        await h.wait_for("the printer offline", lambda: h.state() == "offline")
        n = len(h.values("printer_state"))
        await h.wait_for("polls meanwhile", lambda: len(h.values("printer_state")) >= n + 2)
        assert h.values("printer_state")[-1] == "Offline"
        assert h.ctx.is_connected  # OctoPrint itself answers
        sim.app.connected = True
        await h.wait_for("the printer back", lambda: h.state() != "offline")
    assert [r for r in caplog.records if r.name.startswith(("gateway", "drivers"))] == []


async def test_wrong_key_is_said_once(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m = machine(sim.url, api_key="not-the-key")
    async with reading(m) as h:
        await h.wait_for("several refused polls", lambda: sim.requests >= 5)
        assert not h.ctx.is_connected
    said = [r.getMessage() for r in caplog.records if "refused the gateway's credentials" in r.getMessage()]
    assert len(said) == 1, said
    assert 'printer "ender-01"' in said[0]
    assert "HTTP 403" in said[0]
    assert "Application Keys" in said[0]
    assert h.values("bed_temp") == []


async def test_octoprint_going_away_and_back(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    m = machine(sim.url)
    async with reading(m) as h:
        await h.wait_for("values", lambda: h.values("bed_temp"))
        sim.go_away()
        await h.wait_for("offline", lambda: "offline" in h.values("state"))
        await asyncio.sleep(2.5)  # a few failed attempts while it is away
        sim.come_back()
        back = time.time_ns()
        took = await h.wait_for("fresh values", lambda: h.of(m.id, "bed_temp", since_ns=back), timeout_s=5)
        assert took < 5
    lost = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(lost) == 1, lost
    assert len([r for r in caplog.records if "recovered after" in r.getMessage()]) == 1


@pytest.mark.parametrize("fault", ["malformed_json", "unexpected_shape"])
async def test_bad_answers_are_counted_and_reading_goes_on(sim: Sim, fault: str) -> None:
    m = machine(sim.url)
    async with reading(m) as h:
        await h.wait_for("values", lambda: h.values("bed_temp"))
        sim.app.corrupt = fault  # type: ignore[assignment]
        await h.wait_for(f"{fault} counted", lambda: h.bad(fault) >= 2)
        sim.app.corrupt = None
        n = len(h.values("printer_state"))
        await h.wait_for("good answers again", lambda: len(h.values("printer_state")) > n)
        assert h.ctx.restarts == 0
        assert h.ctx.is_connected
