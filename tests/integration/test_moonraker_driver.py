"""Moonraker driver against the Moonraker simulator over real WebSockets on loopback, under the real supervisor."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from kit.driver import DriverHarness, supervised

from drivers.moonraker.config import MoonrakerMachine
from drivers.moonraker.driver import MoonrakerDriver
from drivers.moonraker.status import OBJECTS
from gateway.backoff import Backoff
from gateway.machines import MachineMeta
from gateway.reading import Quality
from simulators.moonraker_sim import Cycle, MoonrakerSim

FAST = Cycle(idle_s=0.3, heat_s=0.2, print_s=2.0, hold_s=0.5, layers=40, filament_mm=1200.0)
SLOW = Cycle(idle_s=0.2, heat_s=0.2, print_s=600.0)  # prints for the whole test once started
KEY = "4f0ab9c2e1d84d7a9b1c2d3e4f5a6b7c"


@pytest.fixture
def sim() -> Iterator[MoonrakerSim]:
    s = MoonrakerSim(cycle=FAST, interval_s=0.05, api_key=KEY)
    s.start()
    yield s
    s.stop()


def machine(sim: MoonrakerSim, **kw: object) -> MoonrakerMachine:
    fields: dict[str, object] = {"id": "voron-01", "name": "Voron 2.4 №1", "driver": "moonraker", "url": sim.url,
                                 "api_key": KEY, "expected_interval_s": 1.0}
    fields.update(kw)
    return MoonrakerMachine.model_validate(fields)


@asynccontextmanager
async def running(m: MoonrakerMachine, backoff: Backoff | None = None) -> AsyncIterator[DriverHarness]:
    meta = MachineMeta(id=m.id, name=m.name, kind="printer", driver="moonraker", site="test",
                       expected_interval_s=m.expected_interval_s)
    retry = MoonrakerDriver(m).retry
    async with supervised(MoonrakerDriver(m), [meta],
                          backoff=backoff or Backoff(retry.initial_s, retry.cap_s, immediate_first=True)) as h:
        yield h


def signals(h: DriverHarness) -> dict[str, object]:
    return {k: v["value"] for k, v in h.lab.machine("voron-01")["signals"].items()}


async def test_values_state_words_and_job_fields_arrive_mapped(sim: MoonrakerSim) -> None:
    async with running(machine(sim)) as h:
        await h.wait_for("a completed job", lambda: "completed" in h.values("job_event"))
        await h.wait_for("the printer idle again", lambda: h.state() == "idle")
        seen = {r.signal: r for r in h.readings}
    events = [(r.signal, r.value) for r in h.readings if r.signal in ("job_event", "job_file", "job_result")]
    assert events[:5] == [("job_file", FAST.files[0]), ("job_event", "start"),
                          ("job_file", FAST.files[0]), ("job_result", "completed"), ("job_event", "completed")]
    states = list(h.values("state"))
    assert states[:3] == ["idle", "running", "idle"]
    assert seen["nozzle_temp"].unit == "degC"
    assert seen["bed_target"].unit == "degC"
    assert FAST.nozzle_c in h.values("nozzle_target")
    assert FAST.bed_c in h.values("bed_target")
    assert 100.0 in h.values("progress_pct")
    assert seen["progress_pct"].unit == "%"
    assert FAST.layers in h.values("total_layers")
    assert FAST.layers in h.values("layer")
    used = h.values("filament_used_mm")
    assert max(float(str(v)) for v in used) == pytest.approx(FAST.filament_mm, rel=0.01)
    assert seen["elapsed_s"].unit == "s"
    assert max(int(str(v)) for v in h.values("elapsed_s")) >= 1
    assert seen["remaining_s"].quality is Quality.UNCERTAIN or h.values("remaining_s")[-1] == 0
    # the API key went in the upgrade request; only status was asked for, with the documented objects
    assert sim.upgrade_headers[0]["X-Api-Key"] == KEY
    assert {r["method"] for r in sim.requests} == {"server.info", "printer.objects.subscribe"}
    subscribe = next(r for r in sim.requests if r["method"] == "printer.objects.subscribe")
    assert set(subscribe["params"]["objects"]) == {"extruder", "heater_bed", "print_stats", "virtual_sdcard",
                                                   "display_status"}
    assert subscribe["params"]["objects"] == OBJECTS


async def test_a_partial_update_changes_only_what_it_carries(sim: MoonrakerSim) -> None:
    sim.freeze()
    async with running(machine(sim)) as h:
        await h.wait_for("the first status", lambda: "bed_temp" in signals(h) and h.state() == "idle")
        before = signals(h)
        mark = len(h.readings)
        await asyncio.to_thread(sim.update, {"extruder": {"temperature": 123.45}})
        await h.wait_for("the new nozzle temperature", lambda: signals(h)["nozzle_temp"] == 123.45)
        after = signals(h)
        sent = [r.signal for r in h.readings[mark:]]
    assert sent == ["nozzle_temp"]
    assert {k: v for k, v in after.items() if k != "nozzle_temp"} == {k: v for k, v in before.items()
                                                                      if k != "nozzle_temp"}
    assert before["nozzle_target"] == 0.0
    assert before["state"] == "idle"


async def test_a_quiet_printer_is_repeated_so_it_stays_online(sim: MoonrakerSim) -> None:
    sim.freeze()  # Klipper sends nothing: nothing changes
    async with running(machine(sim)) as h:
        await h.wait_for("the first status", lambda: h.of("voron-01", "state"))
        start = time.monotonic()
        await h.wait_for("three repeats", lambda: len(h.of("voron-01", "state")) >= 4, timeout_s=10)
        took = time.monotonic() - start
        assert set(h.values("state")) == {"idle"}
    assert 2.0 <= took <= 6.0, took  # every expected_interval_s (1 s), not more often


async def test_klippy_shutdown_is_an_error_and_ready_subscribes_again(sim: MoonrakerSim) -> None:
    sim.cycle = SLOW
    async with running(machine(sim)) as h:
        await h.wait_for("a job printing", lambda: h.state() == "running")
        await asyncio.to_thread(sim.klippy_shutdown)
        await h.wait_for("state error", lambda: h.state() == "error")
        assert h.values("job_result") == ["failed"]
        assert "Klipper shutdown" in str(signals(h)["error"])
        subscribes = sum(r["method"] == "printer.objects.subscribe" for r in sim.requests)
        await asyncio.to_thread(sim.klippy_ready)
        await h.wait_for("state idle after the restart", lambda: h.state() == "idle")
        await h.wait_for("a new job on the restarted Klipper", lambda: h.values("job_event")[-1:] == ["start"])
        assert sum(r["method"] == "printer.objects.subscribe" for r in sim.requests) == subscribes + 1
        assert h.ctx.restarts == 0
        assert h.ctx.is_connected


async def test_klippy_disconnected_is_offline_until_it_is_ready(sim: MoonrakerSim,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running(machine(sim)) as h:
        await h.wait_for("connected", lambda: h.ctx.is_connected and "nozzle_temp" in signals(h))
        await asyncio.to_thread(sim.klippy_disconnect)
        await h.wait_for("offline", lambda: h.state() == "offline" and not h.ctx.is_connected)
        assert "Klipper is disconnected" in h.ctx.last_error
        # Moonraker is connected and the driver retries nothing: Klipper's readiness brings the printer back
        lost = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
        assert lost == [f"moonraker:voron-01 unavailable: {h.ctx.last_error}"], lost
        await asyncio.to_thread(sim.klippy_ready)
        await h.wait_for("back", lambda: h.ctx.is_connected and h.state() in ("idle", "running"))
        assert h.ctx.restarts == 0


async def test_values_are_fresh_within_5_s_after_moonraker_returns(sim: MoonrakerSim,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running(machine(sim)) as h:
        await h.wait_for("values", lambda: len(h.of("voron-01", "nozzle_temp")) >= 2)
        await asyncio.to_thread(sim.stop)
        await h.wait_for("offline", lambda: h.state() == "offline")
        await asyncio.sleep(12)  # the outage itself, long enough for the backoff to reach its cap
        await asyncio.to_thread(sim.start)
        up_ns, up = time.time_ns(), time.monotonic()
        await h.wait_for("fresh values", lambda: h.of("voron-01", "nozzle_temp", up_ns), timeout_s=15)
        took = time.monotonic() - up
        await h.wait_for("online", lambda: h.state() != "offline")
    assert took < 5.0, f"fresh values {took:.1f} s after Moonraker came back"
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.supervisor"]
    assert len([line for line in lines if "unavailable" in line]) == 1, lines
    assert len([line for line in lines if "recovered" in line]) == 1, lines


async def test_a_wrong_api_key_is_one_clear_error_naming_the_printer(sim: MoonrakerSim,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running(machine(sim, api_key="0" * 32), Backoff(0.05, 0.1)) as h:
        await h.wait_for("three refused attempts", lambda: len(sim.upgrade_headers) >= 3)
        assert not h.ctx.is_connected
        assert h.state() == "offline"
    assert h.ctx.last_error == (
        f'printer "Voron 2.4 №1" (voron-01): Moonraker at {sim.url} refused the API key (Unauthorized (code '
        "-32602)); set api_key: ${ENV_VAR} to the key of moonraker.conf [authorization] (Mainsail: Settings > "
        "Authorization)")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"moonraker:voron-01 unavailable: {h.ctx.last_error}; retrying with backoff"]
    assert h.ctx.restarts == 0


async def test_no_api_key_where_one_is_needed_says_so(sim: MoonrakerSim) -> None:
    async with running(machine(sim, api_key=None), Backoff(0.05, 0.1)) as h:
        await h.wait_for("a refusal", lambda: "needs an API key" in h.ctx.last_error)
    assert "X-Api-Key" not in sim.upgrade_headers[0]


async def test_an_upgrade_refused_by_a_proxy_names_the_status() -> None:
    proxy = MoonrakerSim(refuse_upgrade=401)
    proxy.start()
    try:
        async with running(machine(proxy), Backoff(0.05, 0.1)) as h:
            await h.wait_for("a refusal", lambda: "HTTP 401" in h.ctx.last_error)
    finally:
        proxy.stop()
    assert h.ctx.last_error == (f'printer "Voron 2.4 №1" (voron-01): Moonraker at {proxy.url} refused the WebSocket '
                                "with HTTP 401; check api_key (sent as X-Api-Key) against moonraker.conf "
                                "[authorization]")


async def test_malformed_frames_are_counted_and_never_stop_the_driver(sim: MoonrakerSim) -> None:
    sim.freeze()
    async with running(machine(sim)) as h:
        await h.wait_for("the first status", lambda: "bed_temp" in signals(h))
        for frame in ("not json {", b"\x00\x01\x02", "[1, 2]", '{"id": 1, "result": {}}',
                      json.dumps({"jsonrpc": "2.0", "method": "notify_status_update", "params": "x"}),
                      json.dumps({"jsonrpc": "2.0", "method": "notify_status_update",
                                  "params": [{"extruder": 5}, 1.0]}),
                      json.dumps({"jsonrpc": "2.0", "method": "notify_status_update",
                                  "params": [{"extruder": {"temperature": "hot", "target": 200.0}}, 1.0]}),
                      json.dumps({"jsonrpc": "2.0", "method": "notify_status_update",
                                  "params": [{"print_stats": {"state": "exploded"}}, 1.0]})):
            await asyncio.to_thread(sim.send_raw, frame)
        await asyncio.to_thread(sim.update, {"heater_bed": {"temperature": 55.5}})
        await h.wait_for("a good update after the bad ones", lambda: signals(h)["bed_temp"] == 55.5)
        assert h.bad("malformed_json") == 1
        assert h.bad("unexpected_shape") == 5
        assert h.bad("not_a_number") == 1
        assert h.bad("unknown_state") == 1
        # the good field of a delta with a bad one still applies; the bad one keeps the last good value
        assert signals(h)["nozzle_target"] == 200.0
        assert isinstance(signals(h)["nozzle_temp"], float)
        assert h.ctx.restarts == 0
        assert h.ctx.is_connected
