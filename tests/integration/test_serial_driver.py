"""Serial driver end to end on real pseudo-terminals: virtual printers and instruments, no mocks of pyserial.

Every test ends by checking everything the simulated device received: only read-only commands, numbered and
checksummed, for printers; only the configured requests for instruments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from kit.driver import DriverHarness, supervised

from drivers.serial.config import InstrumentField, InstrumentMessage, InstrumentOptions, PrinterOptions, SerialMachine
from drivers.serial.driver import SerialDriver
from drivers.serial.marlin import is_read_only, unnumber
from gateway.backoff import Backoff
from gateway.cli import main
from gateway.machines import MachineMeta
from gateway.reading import Quality
from simulators.serial_instruments import VirtualBalance, VirtualScpiMeter
from simulators.serial_printer import VirtualPrinter, dos_name
from simulators.serial_pty import PtyDevice

FAST = PrinterOptions(poll_interval_s=0.3, temperature_interval_s=1, stats_interval_s=5, response_timeout_s=3,
                      silence_timeout_s=4)


@asynccontextmanager
async def running(machine: SerialMachine) -> AsyncIterator[DriverHarness]:
    """The serial driver of `machine` under the real supervisor (kit.driver)."""
    meta = MachineMeta(id=machine.id, name=machine.name, kind=machine.kind, driver="serial", site="test",
                       expected_interval_s=machine.expected_interval_s)
    async with supervised(SerialDriver(machine), [meta], backoff=Backoff(initial_s=0.2, cap_s=0.5)) as gw:
        yield gw


def printer_machine(port: Path, options: PrinterOptions = FAST) -> SerialMachine:
    return SerialMachine(id="fdm-01", name="Printer", kind="printer", driver="serial", port=str(port),
                         protocol="marlin", expected_interval_s=1, printer=options)


def changes(values: Sequence[object]) -> list[object]:
    out: list[object] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def assert_printer_got_only_read_only_commands(p: PtyDevice) -> None:
    lines = p.received_lines()
    assert lines, "the printer received nothing"
    for line in lines:
        n, command, checksum_ok = unnumber(line)
        assert n is not None, f"unnumbered line sent: {line!r}"
        assert checksum_ok, f"bad checksum on {line!r}"
        assert is_read_only(command), f"driver sent {command!r} (line {line!r}), outside its read-only set"


@pytest.fixture
def port(tmp_path: Path) -> Path:
    return tmp_path / "by-id" / "usb-virtual-if00"


@pytest.fixture
def printer_factory(port: Path) -> AsyncIterator[Callable[..., VirtualPrinter]]:
    made: list[VirtualPrinter] = []

    def make(**kw: object) -> VirtualPrinter:
        p = VirtualPrinter(str(port), name="fdm-01", **kw)  # type: ignore[arg-type]
        p.start()
        made.append(p)
        return p

    yield make  # type: ignore[misc]
    for p in made:
        p.stop()


# --- printers -------------------------------------------------------------------------------------------------
async def test_print_job_is_followed_from_heat_up_to_completion(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=150.0, job_duration_s=600.0, idle_between_jobs_s=None)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("idle", lambda: gw.values("state") == ["idle"])
        p.start_job()
        assert p.job is not None
        job_file = p.job.file
        await gw.wait_for("job end", lambda: "completed" in gw.values("job_event"), timeout_s=25)
        await gw.wait_for("final filament", lambda: gw.values("filament_used_mm")[-1:] != [0.0], timeout_s=10)
    assert changes(gw.values("state")) == ["idle", "running", "idle"]
    assert gw.values("job_event") == ["start", "completed"]
    # the job starts under the SD card's 8.3 name and gets its long name as soon as M27 C is answered
    assert changes(gw.values("job_file")) == [dos_name(job_file), job_file]
    assert gw.values("job_result") == ["completed"]
    progress = [float(v) for v in gw.values("progress_pct")]  # type: ignore[arg-type]
    assert progress == sorted(progress), "progress went backwards"
    assert progress[-1] == 100.0
    assert len(set(progress)) >= 4
    nozzle = [float(v) for v in gw.values("nozzle_temp")]  # type: ignore[arg-type]
    assert min(nozzle[:3]) < 60, "heat-up was not seen"
    assert max(nozzle) > 200
    elapsed = [int(v) for v in gw.values("elapsed_s")]  # type: ignore[call-overload]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] > 0
    assert float(gw.values("filament_used_mm")[-1]) > 100  # type: ignore[arg-type]
    assert gw.values("firmware")[0] == "Marlin 2.1.2.1"
    assert gw.bad("binary") == gw.bad("garbled") == 0
    assert_printer_got_only_read_only_commands(p)
    sent = [unnumber(line)[1] for line in p.received_lines()]
    assert sent[:3] == ["M110 N0", "M115", "M155 S1"]  # auto-report, so no M105 polling
    assert "M105" not in sent


async def test_unplug_mid_print_goes_offline_within_5_s_and_resumes_without_restart(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=5.0, job_duration_s=3600.0, start_progress_pct=30.0)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        p.unplug()
        took = await gw.wait_for("offline", lambda: gw.state() == "offline", timeout_s=5)
        assert took < 5
        assert not await asyncio.to_thread(port.exists)
        mark = len(gw.readings)
        p.plug()
        await gw.wait_for("temps again", lambda: len(gw.values("nozzle_temp", mark)) >= 2)
        await gw.wait_for("running again", lambda: gw.state() == "running")
        await gw.wait_for("progress again", lambda: len(gw.values("progress_pct", mark)) >= 2)
    assert gw.values("job_event") == ["start"], "a replugged cable must not start a second job"
    assert gw.metrics.value("driver_reconnects_total", driver="serial:fdm-01") == 1
    assert gw.lab.machine("fdm-01")["connected"] is True
    assert_printer_got_only_read_only_commands(p)


async def test_garbage_and_wrong_baud_are_counted_and_good_readings_continue(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=5.0, job_duration_s=3600.0, start_progress_pct=40.0)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        for kind in ("binary", "garbled", "over_long", "blank"):
            p.inject_noise(kind)  # type: ignore[arg-type]
        await gw.wait_for("noise counted", lambda: all(gw.bad(r) >= 1 for r in
                                                       ("binary", "garbled", "over_long", "noise")))
        p.garble = True  # the printer as heard at the wrong baud rate
        await gw.wait_for("wrong baud", lambda: gw.bad("wrong_baud") >= 1)
        p.garble = False
        p.inject_noise("partial_line")
        p.go_silent()
        await asyncio.sleep(2.3)  # the fragment needs 2 s without a line end to count as partial
        p.wake()
        await gw.wait_for("partial", lambda: gw.bad("partial_line") >= 1)
        mark = len(gw.readings)
        await gw.wait_for("good readings", lambda: len(gw.values("nozzle_temp", mark)) >= 2
                          and len(gw.values("progress_pct", mark)) >= 2)
        assert gw.state() == "running"
    assert gw.bad("garbled") >= 8
    assert_printer_got_only_read_only_commands(p)


async def test_resend_request_is_answered_with_the_same_numbered_line(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=5.0, start_progress_pct=10.0)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        p.corrupt_next_line()
        mark = len(p.received_lines())
        await gw.wait_for("resent", lambda: _has_repeat(p.received_lines()[mark:]))
        mark_r = len(gw.readings)
        await gw.wait_for("progress after resend", lambda: len(gw.values("progress_pct", mark_r)) >= 2)
    assert_printer_got_only_read_only_commands(p)


def _has_repeat(lines: list[str]) -> bool:
    numbers = [unnumber(line)[0] for line in lines]
    return any(n is not None and numbers.count(n) > 1 for n in numbers)


async def test_thermal_runaway_is_an_error_and_fails_the_job(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=5.0, start_progress_pct=50.0)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        p.thermal_runaway()
        await gw.wait_for("error", lambda: gw.state() == "error")
        await asyncio.sleep(FAST.silence_timeout_s + 0.5)  # halted firmware is quiet, but the error stays shown
        assert gw.state() == "error"
        p.reset()
        await gw.wait_for("idle after reset", lambda: gw.state() == "idle")
    assert gw.values("job_result") == ["failed"]
    assert gw.values("error") == ["Thermal Runaway, system stopped! Heater_ID: 0", "Printer halted. kill() called!"]
    assert_printer_got_only_read_only_commands(p)


async def test_filament_runout_pauses_and_resume_continues(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=5.0, start_progress_pct=50.0)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        p.filament_runout()
        await gw.wait_for("paused", lambda: gw.state() == "paused")
        p.resume()
        await gw.wait_for("running again", lambda: gw.state() == "running")
    assert changes(gw.values("state")) == ["running", "paused", "running"]
    assert "paused: FilamentRunout T0" in gw.values("message")
    assert_printer_got_only_read_only_commands(p)


async def test_silent_firmware_goes_offline_and_comes_back(
        port: Path, printer_factory: Callable[..., VirtualPrinter], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.supervisor")
    p = printer_factory(time_scale=5.0, start_progress_pct=50.0)
    options = FAST.model_copy(update={"silence_timeout_s": 1.5})
    async with running(printer_machine(port, options)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        p.go_silent()
        await gw.wait_for("offline", lambda: gw.state() == "offline", timeout_s=5)
        sent_while_silent = len(p.received_lines())
        await gw.wait_for("the driver trying again while the printer is silent",
                          lambda: len(p.received_lines()) > sent_while_silent)
        p.wake()
        await gw.wait_for("running again", lambda: gw.state() == "running")
        assert gw.ctx.is_connected
        assert gw.ctx.last_error == ""
    down = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert down, "the silence was never reported"
    assert "stopped answering" in down[0], down
    assert any("recovered after" in r.getMessage() for r in caplog.records)
    assert_printer_got_only_read_only_commands(p)


@pytest.mark.parametrize(("flavour", "firmware"), [("prusa", "Prusa-Firmware 3.13.3"),
                                                   ("klipper", "Klipper v0.12.0-85-gd785b396")])
async def test_prusa_and_klipper(port: Path, printer_factory: Callable[..., VirtualPrinter], flavour: str,
                                 firmware: str) -> None:
    p = printer_factory(flavour=flavour, time_scale=5.0, start_progress_pct=50.0)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        await gw.wait_for("temps", lambda: len(gw.values("nozzle_temp")) >= 2 and len(gw.values("bed_temp")) >= 2)
        if flavour == "prusa":
            await gw.wait_for("remaining", lambda: any(r.signal == "remaining_s" and r.quality is Quality.GOOD
                                                       for r in gw.readings))
    assert gw.values("firmware")[0] == firmware
    sent = [unnumber(line)[1] for line in p.received_lines()]
    if flavour == "klipper":
        assert "M105" in sent
        assert "M27 C" not in sent
        assert gw.values("job_file") == ["unknown"]
    else:
        assert "M155 S1" in sent
        assert "M105" not in sent
    assert_printer_got_only_read_only_commands(p)


@pytest.mark.parametrize("flavour", ["prusa", "klipper"])
async def test_firmware_without_m78_never_spins_the_event_loop(
        port: Path, printer_factory: Callable[..., VirtualPrinter], flavour: str) -> None:
    """Prusa and Klipper answer M78 with "Unknown command": the session must keep awaiting, not busy-loop."""
    p = printer_factory(flavour=flavour, time_scale=5.0)
    options = FAST.model_copy(update={"stats_interval_s": 1})
    worst = 0.0
    async with running(printer_machine(port, options)) as gw:
        await gw.wait_for("M78 asked", lambda: any(unnumber(line)[1] == "M78" for line in p.received_lines()),
                          timeout_s=15)
        await asyncio.sleep(0.5)  # its "Unknown command" answer has arrived
        tick = 0.05
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            before = time.monotonic()
            await asyncio.sleep(tick)
            worst = max(worst, time.monotonic() - before - tick)
        temps_after = len(gw.values("nozzle_temp"))
        await gw.wait_for("more temperatures", lambda: len(gw.values("nozzle_temp")) > temps_after + 1)
    # a spinning session starves every other task: lag of seconds; a healthy one a few milliseconds
    assert worst < 0.25, f"event loop held for {worst * 1000:.0f} ms while the firmware refused M78"
    sent = [unnumber(line)[1] for line in p.received_lines()]
    assert sent.count("M78") == 1, "an unknown command is asked once, never again"


# --- instruments ----------------------------------------------------------------------------------------------
def balance_machine(port: Path, request: str | None) -> SerialMachine:
    return SerialMachine(
        id="balance-01", name="Balance", kind="balance", driver="serial", port=str(port), baud_rate=9600,
        line_ending="crlf", protocol="lines", expected_interval_s=1,
        instrument=InstrumentOptions(poll_interval_s=0.2, messages=[InstrumentMessage(
            request=request, template="{status},{mode},{weight:number} {unit}",
            fields={"weight": InstrumentField(unit="g"),
                    "stable": InstrumentField(group="status", type="bool", map={"ST": True, "US": False})})]))


async def test_polled_balance_parses_as_configured(port: Path) -> None:
    b = VirtualBalance(str(port), name="balance-01", mode="poll")
    b.start()
    try:
        async with running(balance_machine(port, "SI")) as gw:
            await gw.wait_for("weight", lambda: len(gw.values("weight")) >= 2)
            b.place(12.345)
            await gw.wait_for("stable 12.345", lambda: any(
                w == 12.345 and s is True for w, s in zip(gw.values("weight"), gw.values("stable"), strict=True)))
            assert False in gw.values("stable")  # it was seen settling
            assert gw.state() == "idle"
    finally:
        b.stop()
    assert set(b.received_lines()) == {"SI"}
    assert all(r.unit == "g" for r in gw.readings if r.signal == "weight")


async def test_streaming_balance_and_unmatched_lines(port: Path) -> None:
    b = VirtualBalance(str(port), name="balance-01", mode="stream", stream_interval_s=0.1)
    b.start()
    try:
        async with running(balance_machine(port, None)) as gw:
            await gw.wait_for("weight", lambda: len(gw.values("weight")) >= 3)
            b.write_line("CAL DONE")
            await gw.wait_for("unmatched", lambda: gw.bad("unmatched") >= 1)
            mark = len(gw.readings)
            await gw.wait_for("weight again", lambda: len(gw.values("weight", mark)) >= 3)
    finally:
        b.stop()
    assert b.received_lines() == []  # a free-running instrument is never asked anything


async def test_scpi_meter_polled_with_two_requests(port: Path) -> None:
    meter = VirtualScpiMeter(str(port), name="tm-01")
    meter.start()
    machine = SerialMachine(
        id="tm-01", name="Meter", kind="analyser", driver="serial", port=str(port), protocol="lines",
        expected_interval_s=1, instrument=InstrumentOptions(poll_interval_s=0.2, messages=[
            InstrumentMessage(request="MEAS:TEMP?", pattern=r"^(?P<temperature>[-+]?\d\.\d+E[-+]\d+)$",
                              fields={"temperature": InstrumentField(unit="degC")}),
            InstrumentMessage(request="MEAS:VOLT:DC?", template="{voltage:number}",
                              fields={"voltage": InstrumentField(unit="mV", scale=1000.0)})]))
    try:
        async with running(machine) as gw:
            await gw.wait_for("both", lambda: len(gw.values("temperature")) >= 2 and len(gw.values("voltage")) >= 2)
    finally:
        meter.stop()
    assert all(20 < float(v) < 28 for v in gw.values("temperature"))  # type: ignore[arg-type]
    assert all(1200 < float(v) < 1270 for v in gw.values("voltage"))  # type: ignore[arg-type]
    assert set(meter.received_lines()) == {"MEAS:TEMP?", "MEAS:VOLT:DC?"}
    assert gw.bad("unmatched") == 0


# --- probe ----------------------------------------------------------------------------------------------------
def test_probe_identifies_marlin_and_prints_a_valid_yaml_block(port: Path, capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    p = VirtualPrinter(str(port), name="fdm-01", start_progress_pct=10.0)
    p.start()
    try:
        assert main(["serial", "probe", str(port), "--listen", "0.2", "--answer", "2"]) == 0
    finally:
        p.stop()
    out = capsys.readouterr().out
    assert "Found Marlin 2.1.2.1 on a Ender-3 V2 at 115200 baud." in out
    block = out[out.index("  - id:"):]
    site = tmp_path / "site.yaml"
    site.write_text(f"site: {{id: t, name: T}}\nmachines:\n{block}")
    assert main(["check-config", str(site)]) == 0
    assert [unnumber(line)[1] for line in p.received_lines()] == ["M110 N0", "M115"]
