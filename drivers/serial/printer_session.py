"""Talking to a Marlin-family printer: identify it, ask for status, never flood, never disturb a print.

Every command is read-only (`marlin.READ_ONLY_COMMANDS`), numbered and checksummed, and sent only after the
previous one's `ok` (`busy:` keep-alives extend the wait). A firmware that goes quiet while it works through a
long blocking command is not dropped: after two lost `ok`s the driver listens for a late one and sends the next
command only as a probe, waiting twice as long after each further loss (up to 2 minutes). Only total silence
(no byte for `silence_timeout_s`) counts as a dead link.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from drivers.serial import marlin
from drivers.serial.config import PrinterOptions
from drivers.serial.printer import PrinterModel
from drivers.serial.session import SessionBase
from drivers.serial.transport import PortSettings, SerialLink
from gateway.reading import Reading, now_ns
from gateway.supervisor import DriverContext

log = logging.getLogger(__name__)

KEEP_SENT_LINES = 32
MAX_IN_FLIGHT_AFTER_LOSS = 2
MAX_PROBE_WAIT_S = 120.0


class FirmwareRestarted(Exception):
    """The firmware rebooted (reset button, watchdog): start the conversation again."""


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
        self.sent: OrderedDict[int, str] = OrderedDict()
        self.lost_streak = 0
        self.ignore_oks = 0
        self.unsupported: set[str] = set()
        self.autoreport = False
        self.link: SerialLink | None = None
        self._ok_seen = 0
        self._restarted = False

    # --- sending ------------------------------------------------------------------------------------------
    async def _send_numbered(self, n: int, command: str) -> None:
        if not marlin.is_read_only(command):
            raise ReadOnlyViolation(f"refusing to send {command!r}: not in the read-only set")
        line = marlin.numbered(n, command)
        self.sent[n] = line
        while len(self.sent) > KEEP_SENT_LINES:
            self.sent.popitem(last=False)
        assert self.link is not None
        await self.link.send(line)

    def quiet_is_expected(self) -> bool:
        return self.model.error is not None  # a halted firmware says nothing until it is reset

    async def command(self, command: str) -> bool:
        """Send one command and wait for its `ok`; False if it counted as lost."""
        if self.lost_streak >= MAX_IN_FLIGHT_AFTER_LOSS:
            # commands went unanswered: listen for a late `ok` first, and only then send this one as a probe,
            # waiting longer after each loss (a firmware blocked without busy: must not have its buffer filled)
            extra = self.lost_streak - MAX_IN_FLIGHT_AFTER_LOSS
            if await self._wait_ok(min(self.opts.response_timeout_s * 2 ** extra, MAX_PROBE_WAIT_S)):
                self.lost_streak = 0
        if command.startswith("M110"):
            self.line_no = 0
            await self._send_numbered(0, command)
        else:
            self.line_no += 1
            await self._send_numbered(self.line_no, command)
        if await self._wait_ok(self.opts.response_timeout_s):
            self.lost_streak = 0
            return True
        self.lost_streak += 1
        log.debug("%s: no ok for %s within %.0f s", self.machine, command, self.opts.response_timeout_s)
        return False

    async def _wait_ok(self, timeout_s: float) -> bool:
        assert self.link is not None
        start_ok = self._ok_seen
        deadline = self.clock() + timeout_s
        while self._ok_seen == start_ok:
            if self._restarted:
                raise FirmwareRestarted
            left = deadline - self.clock()
            if left <= 0:
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
                    if self.ignore_oks:
                        self.ignore_oks -= 1
                    else:
                        self._ok_seen += 1
                case marlin.Resend(line=n):
                    await self._resend(n)
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

    async def _resend(self, n: int) -> None:
        """The firmware lost or rejected line n: send it and everything after it again (the `ok` that follows
        the request acknowledges the error, not a command)."""
        self.ignore_oks += 1
        if n in self.sent:
            lines = [k for k in self.sent if k >= n]
            log.debug("%s: firmware asked to resend from line %d", self.machine, n)
            assert self.link is not None
            for k in lines:
                await self.link.send(self.sent[k])
            return
        # a line we no longer have (e.g. from before a reconnect): restart the numbering where the firmware is
        self.line_no = max(n - 1, 0)
        await self._send_numbered(self.line_no, f"M110 N{self.line_no}")
        self.ignore_oks -= 1  # the M110 itself is answered with the ok we are waiting for

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
        while True:
            try:
                await self._conversation()
            except FirmwareRestarted:
                log.info("%s: firmware restarted; identifying it again", self.machine)

    async def _conversation(self) -> None:
        self._restarted = False
        self.line_no = 0
        self.sent.clear()
        self.lost_streak = 0
        self.ignore_oks = 0
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
