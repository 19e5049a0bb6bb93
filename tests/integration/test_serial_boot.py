"""Serial driver against a printer that reboots like real Marlin: bootloader, glitch bytes, `start`, banner.

The virtual printer counts every command that reached it while an earlier one was still unanswered (or in the same
write as another one) in `overlaps`: the driver must keep exactly one command in flight, boot or no boot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_serial_driver import FAST, assert_printer_got_only_read_only_commands, printer_machine, running

from drivers.serial.marlin import unnumber
from simulators.serial_printer import RESET_GLITCH, VirtualPrinter


@pytest.fixture
def port(tmp_path: Path) -> Path:
    return tmp_path / "by-id" / "usb-virtual-if00"


@pytest.fixture
def printer_factory(port: Path) -> Iterator[Callable[..., VirtualPrinter]]:
    made: list[VirtualPrinter] = []

    def make(**kw: object) -> VirtualPrinter:
        p = VirtualPrinter(str(port), name="fdm-01", **kw)  # type: ignore[arg-type]
        p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def commands(p: VirtualPrinter, since: int = 0) -> list[str]:
    return [unnumber(line)[1] for line in p.received_lines()[since:]]


@pytest.mark.parametrize("glitch", [b"", RESET_GLITCH], ids=["clean-start", "glitch-before-start"])
async def test_board_that_resets_when_the_port_opens_is_identified_one_command_at_a_time(
        port: Path, printer_factory: Callable[..., VirtualPrinter], glitch: bytes) -> None:
    """Arduino-style boards reset when the host opens the port: the first command dies in the bootloader, the
    bootloader's own output is garbage at another baud rate, and `start` may arrive with glitch bytes glued to it."""
    p = printer_factory(time_scale=5.0, idle_between_jobs_s=None, reset_on_connect=True, bootloader_noise_lines=12,
                        reset_glitch=glitch)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("idle", lambda: gw.state() == "idle")
        await gw.wait_for("auto-reported temperatures", lambda: len(gw.values("nozzle_temp")) >= 3)
        assert p.resets == 1
    sent = commands(p)
    assert sent[0] == "M110 N0"  # lost in the bootloader
    assert sent[1:4] == ["M110 N0", "M115", "M155 S1"], "after the banner: identify, then switch on auto-report"
    assert "M105" not in sent
    assert p.overlaps == 0, f"{p.overlaps} commands were sent while another was unanswered"
    assert gw.values("firmware") == ["Marlin 2.1.2.1"]
    assert gw.bad("garbled") >= 12
    assert gw.bad("wrong_baud") == 0, "a reset's boot garbage is not a wrong baud rate"
    assert_printer_got_only_read_only_commands(p)


async def test_reset_mid_print_restarts_the_conversation_with_one_command_in_flight(
        port: Path, printer_factory: Callable[..., VirtualPrinter]) -> None:
    p = printer_factory(time_scale=5.0, start_progress_pct=50.0, idle_between_jobs_s=None)
    async with running(printer_machine(port)) as gw:
        await gw.wait_for("running", lambda: gw.state() == "running")
        await gw.wait_for("identified", lambda: "M155 S1" in commands(p))
        mark = len(p.received_lines())
        readings_mark = len(gw.readings)
        p.reset()
        await gw.wait_for("idle after reset", lambda: gw.state() == "idle")
        await gw.wait_for("temperatures after reset", lambda: len(gw.values("nozzle_temp", readings_mark)) >= 3,
                          timeout_s=FAST.response_timeout_s * 4)
    after = commands(p, mark)
    start = after.index("M110 N0")
    assert after[start:start + 3] == ["M110 N0", "M115", "M155 S1"], after
    assert "M105" not in after
    assert p.overlaps == 0, f"{p.overlaps} commands were sent while another was unanswered"
    assert gw.values("firmware", readings_mark) == ["Marlin 2.1.2.1"]
    assert gw.values("job_result") == ["failed"]  # the reset killed the print
    assert gw.bad("wrong_baud") == 0
    assert_printer_got_only_read_only_commands(p)
