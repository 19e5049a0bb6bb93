"""What every serial session shares: reading items with silence detection, counting garbage, spotting a wrong baud."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from drivers.serial.transport import Bad, Line, PortSettings, SerialLink
from gateway.driver import DriverContext
from gateway.reading import Reading

WRONG_BAUD_STREAK = 8
WRONG_BAUD_MIN_S = 3.0  # ... over at least this long: a reset's boot garbage is a short burst, then `start`


class FirmwareSilent(Exception):
    """The port is open but the device has sent nothing for too long."""


class SessionBase:
    """Feeds lines to a subclass, counts bad input by reason, and raises FirmwareSilent on a dead link."""

    def __init__(self, machine: str, settings: PortSettings, ctx: DriverContext, *,
                 silence_timeout_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.machine = machine
        self.settings = settings
        self.ctx = ctx
        self.silence_timeout_s = silence_timeout_s
        self.clock = clock
        self.garbled_streak = 0
        self.garbled_since = 0.0
        self.baud_warned = False
        self.lines_ok = 0

    async def next_line(self, link: SerialLink, timeout_s: float) -> str | None:
        """The next good line within `timeout_s` (garbage is counted and skipped), or None."""
        deadline = self.clock() + timeout_s
        while True:
            left = deadline - self.clock()
            if self.silence_timeout_s is not None and not self.quiet_is_expected():
                quiet = self.clock() - link.last_rx
                if quiet > self.silence_timeout_s:
                    raise FirmwareSilent(
                        f"{self.settings.port}: nothing received for {quiet:.0f} s (silence_timeout_s "
                        f"{self.silence_timeout_s:g}); the device stopped answering — check power and cable; "
                        "the port is reopened")
                left = min(left, self.silence_timeout_s - quiet + 0.05)
            if left <= 0:
                return None
            item = await link.next_item(left)
            if item is None:
                continue
            if isinstance(item, Line):
                self.garbled_streak = 0
                self.lines_ok += 1
                return item.text
            self.bad(item)

    def quiet_is_expected(self) -> bool:
        """True while silence has a known reason (a halted printer): then it does not mean a dead link."""
        return False

    def bad(self, item: Bad) -> None:
        self.ctx.bad_input(item.reason, self.machine, item.detail)
        if item.reason not in ("garbled", "undecodable", "binary"):
            self.garbled_streak = 0
            return
        now = self.clock()
        if self.garbled_streak == 0:
            self.garbled_since = now
            self.baud_warned = False
        self.garbled_streak += 1
        lasted = now - self.garbled_since
        if self.garbled_streak >= WRONG_BAUD_STREAK and lasted >= WRONG_BAUD_MIN_S and not self.baud_warned:
            self.baud_warned = True
            self.ctx.bad_input(
                "wrong_baud", self.machine,
                f"{self.garbled_streak} garbled lines in a row over {lasted:.0f} s on {self.settings.port} at "
                f"{self.settings.baud_rate} baud: the baud rate is probably wrong; find the right one with "
                f"`kartech serial probe {self.settings.port}`")

    async def emit(self, readings: Sequence[Reading]) -> None:
        if readings:
            await self.ctx.emit(readings)
