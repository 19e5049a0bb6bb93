"""Line-based instruments: balances, SCPI meters, analysers — polled with a request, or free-running.

Each configured message is a regular expression (or a template compiled to one) with named groups; each field
takes one group and reads it by the shared signal rules (gateway/signals.py). A line that matches no message is
counted as `unmatched` bad input; a group that does not convert is counted by its reason and yields a BAD reading
for that field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.serial.config import InstrumentField, InstrumentMessage, InstrumentOptions
from drivers.serial.session import SessionBase
from drivers.serial.transport import PortSettings, SerialLink
from gateway.driver import DriverContext
from gateway.reading import Quality, Reading, Value, now_ns
from gateway.signals import BadInput, BadValue, Deadband, convert


@dataclass(frozen=True)
class CompiledMessage:
    spec: InstrumentMessage
    regex: re.Pattern[str]


class LineParser:
    """Turns instrument lines into readings, as configured."""

    def __init__(self, machine: str, messages: list[InstrumentMessage], bad: BadInput, *, hold_s: float) -> None:
        self.machine = machine
        self.messages = [CompiledMessage(m, re.compile(m.regex())) for m in messages]
        self.bad = bad
        self.deadbands = {name: Deadband(f.deadband, int(hold_s * 1e9))
                          for m in messages for name, f in m.fields.items() if f.deadband is not None}

    def parse(self, line: str, t_ns: int, only: CompiledMessage | None = None) -> list[Reading] | None:
        """Readings from `line` (those a deadband holds back left out), or None if it matches no message (or not
        `only`, when given)."""
        candidates = [only] if only is not None else self.messages
        for msg in candidates:
            m = msg.regex.search(line)
            if m is None:
                continue
            out = []
            for name, f in msg.spec.fields.items():
                r = self._reading(name, f, m.group(f.group or name), t_ns)
                deadband = self.deadbands.get(name)
                if deadband is None or deadband.passes(r):
                    out.append(r)
            return out
        return None

    def _reading(self, name: str, f: InstrumentField, raw: str | None, t_ns: int) -> Reading:
        value = NOT_MATCHED if raw is None else read_field(raw, f)
        if isinstance(value, BadValue):
            if raw is not None:
                self.bad(value.reason, self.machine, f"{name}={raw[:40]!r}")
            return Reading(self.machine, name, None, f.unit, Quality.BAD, t_ns, t_ns)
        return Reading(self.machine, name, value, f.unit, Quality.GOOD, t_ns, t_ns)


NOT_MATCHED = BadValue("not_matched")  # an optional group the line left out: a BAD reading, not bad input


def read_field(raw: str, f: InstrumentField) -> Value | BadValue:
    """The value of one group's text: spaces around it dropped, and between a sign and its digits (balances print
    `+   12.345`), then the shared rules."""
    text = raw.strip()
    if f.type in ("float", "int"):
        text = _SIGN_SPACE.sub("", text)
    return convert(text, f)


_SIGN_SPACE = re.compile(r"(?<=[-+])\s+")


class InstrumentSession(SessionBase):
    def __init__(self, machine: str, settings: PortSettings, options: InstrumentOptions, ctx: DriverContext, *,
                 hold_s: float, clock: Callable[[], float] | None = None) -> None:
        polled = any(m.request for m in options.messages)
        silence = options.silence_timeout_s
        if silence is None and polled:
            silence = max(5 * options.poll_interval_s, 3 * options.response_timeout_s)
        kw = {"clock": clock} if clock is not None else {}
        super().__init__(machine, settings, ctx, silence_timeout_s=silence, **kw)
        self.opts = options
        self.parser = LineParser(machine, options.messages, ctx.bad_input, hold_s=hold_s)
        self.polled = [c for c in self.parser.messages if c.spec.request]
        self.streams = [c for c in self.parser.messages if not c.spec.request]
        self.announced = False

    async def emit(self, readings: Sequence[Reading]) -> None:
        """The first good data after (re)connecting also says the instrument is back (state idle)."""
        if readings and not self.announced:
            self.announced = True
            t = readings[0].receive_ns
            readings = [Reading(self.machine, "state", "idle", None, Quality.GOOD, t, t), *readings]
        await super().emit(readings)

    async def run(self, link: SerialLink) -> None:
        next_poll = self.clock()
        while True:
            if self.polled and self.clock() >= next_poll:
                next_poll = self.clock() + self.opts.poll_interval_s
                for msg in self.polled:
                    await self._ask(link, msg)
            wait = next_poll - self.clock() if self.polled else 3600.0
            line = await self.next_line(link, max(wait, 0.0))
            if line is not None:
                await self._unsolicited(line)

    async def _ask(self, link: SerialLink, msg: CompiledMessage) -> None:
        assert msg.spec.request is not None
        await link.send(msg.spec.request)
        deadline = self.clock() + self.opts.response_timeout_s
        while (left := deadline - self.clock()) > 0:
            line = await self.next_line(link, left)
            if line is None:
                return
            readings = self.parser.parse(line, now_ns(), only=msg)
            if readings is not None:
                await self.emit(readings)
                return
            await self._unsolicited(line)

    async def _unsolicited(self, line: str) -> None:
        for msg in self.streams:
            readings = self.parser.parse(line, now_ns(), only=msg)
            if readings is not None:
                await self.emit(readings)
                return
        self.ctx.bad_input("unmatched", self.machine, f"line matches no configured message: {line[:80]!r}")
