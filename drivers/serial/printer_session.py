"""Talking to a Marlin-family printer: identify it, ask for status, never flood, never disturb a print.

Every command is read-only (`marlin.READ_ONLY_COMMANDS`), numbered and checksummed, and exactly one is in flight at
any time: the next is sent only after the previous one's `ok` (`busy:` keep-alives extend the wait). A firmware
that goes quiet while it works through a long blocking command is not flooded: an unanswered command stays in
flight while the driver listens for its late `ok` — as long again as the response timeout after the first loss,
twice as long after each further one (up to 2 minutes) — and only then is it given up and the next command sent.
Only total silence (no byte for `silence_timeout_s`) counts as a dead link.

A `Resend: N` request is answered after the `ok` that acknowledges it, with the command in flight numbered N (the
firmware dropped that line; after an unnoticed reset it may also expect a different number). A reboot (`start`)
ends everything in flight: the driver waits for the boot banner to finish, then identifies the firmware again
(M110, M115, M155 when the firmware advertises auto-report).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from drivers.serial import marlin
from drivers.serial.config import PrinterOptions
from drivers.serial.printer import PrinterModel
from drivers.serial.session import SessionBase
from drivers.serial.transport import PortSettings, SerialLink
from gateway.driver import DriverContext
from gateway.reading import Reading, now_ns

log = logging.getLogger(__name__)

MAX_LATE_WAIT_S = 120.0
BOOT_QUIET_S = 0.5  # the boot banner is over once the firmware has said nothing for this long
BOOT_MAX_S = 5.0  # ... or after this long, whatever it keeps saying


class FirmwareRestarted(Exception):
    """The firmware rebooted (reset button, watchdog, a board that resets when the port opens): start again."""


class ReadOnlyViolation(Exception):
    """A bug: the driver tried to send something outside its read-only command set."""


class PrinterSession(SessionBase):
    def __init__(self, machine: str, settings: PortSettings, options: PrinterOptions, model: PrinterModel,
                 ctx: DriverContext, *, clock: Callable[[], float] | None = None) -> None:
        kw = {"clock": clock} if clock is not None else {}
        super().__init__(machine, settings, ctx, silence_timeout_s=options.silence_timeout_s, **kw)
        self.opts = options
        self.model = model
        self.line_no = 0
        self.in_flight: tuple[int, str] | None = None  # (line number, command) sent and not yet answered
        self.lost_streak = 0
        self.resend_to: int | None = None  # the firmware asked for this line: sent after the ok that follows
        self.unsupported: set[str] = set()
        self.autoreport = False
        self.link: SerialLink | None = None
        self._restarted = False

    # --- sending ------------------------------------------------------------------------------------------
    async def _send_numbered(self, n: int, command: str) -> None:
        if not marlin.is_read_only(command):
            raise ReadOnlyViolation(f"refusing to send {command!r}: not in the read-only set")
        self.in_flight = (n, command)
        assert self.link is not None
        await self.link.send(marlin.numbered(n, command))

    def quiet_is_expected(self) -> bool:
        return self.model.error is not None  # a halted firmware says nothing until it is reset

    async def command(self, command: str) -> bool:
        """Send one command and wait for its `ok`; False if it went unanswered (it then stays in flight)."""
        if self.in_flight is not None:
            # the previous command went unanswered and may still sit in the firmware's queue behind a long
            # blocking command: listen for its late ok before sending anything, longer after each loss
            wait = min(self.opts.response_timeout_s * 2 ** (self.lost_streak - 1), MAX_LATE_WAIT_S)
            if not await self._wait_answer(wait):
                log.debug("%s: %s never answered; giving it up", self.machine, self.in_flight[1])
                self.in_flight = None
                self.resend_to = None
        if command.startswith("M110"):
            self.line_no = 0
        else:
            self.line_no += 1
        await self._send_numbered(self.line_no, command)
        if await self._wait_answer(self.opts.response_timeout_s):
            return True
        self.lost_streak += 1
        log.debug("%s: no ok for %s within %.0f s", self.machine, command, self.opts.response_timeout_s)
        return False

    async def _wait_answer(self, timeout_s: float) -> bool:
        """Wait until the command in flight is answered; False after `timeout_s` without an ok or a busy:."""
        assert self.link is not None
        deadline = self.clock() + timeout_s
        while self.in_flight is not None:
            if self._restarted:
                raise FirmwareRestarted
            left = deadline - self.clock()
            if left <= 0:
                if self.resend_to is not None:  # a firmware that asks for a resend without the usual ok
                    await self._resend()
                    deadline = self.clock() + timeout_s
                    continue
                return False
            line = await self.next_line(self.link, left)
            if line is None:
                continue
            if await self.handle_line(line):  # a busy: keep-alive: the firmware is working on it
                deadline = self.clock() + timeout_s
        return True

    # --- receiving ----------------------------------------------------------------------------------------
    async def handle_line(self, line: str) -> bool:
        """Process one received line; True if it was a busy: keep-alive."""
        busy = False
        readings: list[Reading] = []
        t = now_ns()
        try:
            messages = marlin.parse_line(line)
        except ValueError as err:  # a line that looks like a known one but is damaged
            self.ctx.bad_input("malformed", self.machine, f"{line[:80]!r}: {err}")
            return False
        for msg in messages:
            match msg:
                case marlin.Ok():
                    await self._on_ok()
                case marlin.Resend(line=n):
                    self.resend_to = n
                case marlin.Busy():
                    busy = True
                case marlin.Started():
                    self._restarted = True
                case marlin.Unknown(command=cmd):
                    self._unsupported(cmd)
                case marlin.FirmwareError(fatal=False, text=text):
                    log.debug("%s: firmware reports %s", self.machine, text)
                case _:
                    pass
            readings += self.model.on_message(msg, t)
        await self.emit(readings)
        return busy

    async def _on_ok(self) -> None:
        if self.resend_to is not None:
            await self._resend()  # this ok acknowledged the resend request, not a command
        elif self.in_flight is not None:
            self.in_flight = None
            self.lost_streak = 0
        else:
            log.debug("%s: an ok with no command in flight (the late answer to one given up)", self.machine)

    async def _resend(self) -> None:
        """The firmware dropped a line and asked for line N: send the command in flight again, numbered N."""
        n, self.resend_to = self.resend_to, None
        if n is None or self.in_flight is None:
            return
        log.debug("%s: firmware asked to resend line %d (%s)", self.machine, n, self.in_flight[1])
        self.line_no = n
        await self._send_numbered(n, self.in_flight[1])

    def _unsupported(self, cmd: str) -> None:
        base = cmd.split()[0].upper() if cmd.split() else cmd
        name = "M27 C" if cmd.strip().upper() == "M27 C" else base
        if name not in self.unsupported:
            self.unsupported.add(name)
            log.info("%s: firmware does not know %s; not asking again", self.machine, name)
        if name == "M27 C":
            self.model.file_query_supported = False
        if name == "M155":
            self.autoreport = False

    async def listen(self, seconds: float) -> None:
        """Process unsolicited lines (auto-reports, host actions, errors) for `seconds`."""
        assert self.link is not None
        await asyncio.sleep(0)  # always yield once: a caller's zero wait must never turn into a busy loop
        deadline = self.clock() + seconds
        while (left := deadline - self.clock()) > 0:
            if self._restarted:
                raise FirmwareRestarted
            line = await self.next_line(self.link, left)
            if line is not None:
                await self.handle_line(line)

    # --- the conversation ---------------------------------------------------------------------------------
    async def run(self, link: SerialLink) -> None:
        self.link = link
        booted = False
        while True:
            try:
                await self._conversation(after_boot=booted)
            except FirmwareRestarted:
                log.info("%s: firmware restarted; identifying it again", self.machine)
                booted = True

    async def _await_boot(self) -> None:
        """Let the firmware finish booting: listen until its banner is over (nothing sent meanwhile)."""
        assert self.link is not None
        end = self.clock() + BOOT_MAX_S
        while (left := end - self.clock()) > 0:
            line = await self.next_line(self.link, min(BOOT_QUIET_S, left))
            if line is None:
                return
            await self.handle_line(line)

    async def _conversation(self, *, after_boot: bool) -> None:
        self.line_no = 0
        self.in_flight = None
        self.resend_to = None
        self.lost_streak = 0
        self.autoreport = False  # a reboot forgot M155; a reconnect asks again anyway
        if after_boot:
            await self._await_boot()
        self._restarted = False
        await self.command("M110 N0")
        await self.command("M115")
        if self.opts.temperature_report == "auto" and self.model.capabilities.get("AUTOREPORT_TEMP"):
            self.autoreport = True
            await self.command(f"M155 S{self.opts.temperature_interval_s}")
        next_status = next_temp = next_stats = self.clock()
        last_job: object = self.model.job
        while True:
            now = self.clock()
            if now >= next_status:
                next_status = now + self.opts.poll_interval_s
                await self._status_round()
            if not self.autoreport and now >= next_temp:
                next_temp = now + self.opts.temperature_interval_s
                await self.command("M105")
            job_changed = self.model.job is not last_job
            last_job = self.model.job
            if "M78" not in self.unsupported and (now >= next_stats or job_changed):
                next_stats = now + self.opts.stats_interval_s
                await self.command("M78")
            # only timers that can still fire decide the wake-up: a timer left in the past (a command the
            # firmware does not know) would make every round return at once and spin without awaiting
            timers = [next_status]
            if not self.autoreport:
                timers.append(next_temp)
            if "M78" not in self.unsupported:
                timers.append(next_stats)
            await self.listen(max(0.0, min(timers) - self.clock()))

    async def _status_round(self) -> None:
        if self.model.file_query_supported:
            await self.command("M27 C")
        await self.command("M27")
        if self.model.job is not None and "M31" not in self.unsupported:
            await self.command("M31")
        await self.emit(self.model.on_status_round(now_ns()))
