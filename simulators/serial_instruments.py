"""Virtual line-based instruments on pseudo-terminals: a laboratory balance and a SCPI temperature/voltage meter.

The balance speaks the A&D / Ohaus style: `SI` (or `S`, `Q`) asks for the weight, the answer is
`ST,GS,+0012.345 g` when stable or `US,GS,...` while settling; in stream mode it sends that line by itself
every interval. The meter answers `*IDN?`, `MEAS:TEMP?` and `MEAS:VOLT:DC?` with SCPI numbers (`+2.345678E+01`).
"""

from __future__ import annotations

import math
import random
from typing import Literal

from simulators.serial_pty import PtyDevice


class VirtualBalance(PtyDevice):
    kind = "balance"

    def __init__(self, link_path: str | None = None, *, name: str = "balance", seed: int = 1,
                 mode: Literal["poll", "stream"] = "poll", stream_interval_s: float = 0.5) -> None:
        super().__init__(link_path, name=name)
        self.rng = random.Random(seed)
        self.mode = mode
        self.stream_interval_s = stream_interval_s
        self.load_g = 0.0
        self.shown_g = 0.0
        self.settle_until = 0.0
        self.silent = False
        self._next_change = 0.0
        self._next_stream = 0.0
        self._now = 0.0

    def place(self, grams: float, now: float | None = None) -> None:
        """Put a sample on the pan (0 to empty it); the reading settles over about a second."""
        with self.lock:
            self.load_g = grams
            self.settle_until = (now if now is not None else self._now) + 1.0

    def stable(self) -> bool:
        return self._now >= self.settle_until

    def line(self) -> str:
        status = "ST" if self.stable() else "US"
        value = self.load_g if self.stable() else self.shown_g
        sign = "-" if value < 0 else "+"
        return f"{status},GS,{sign}{abs(value):>9.3f} g"

    def tick(self, now: float) -> None:
        with self.lock:
            self._now = now
            if now >= self._next_change:
                self._next_change = now + self.rng.uniform(4.0, 9.0)
                self.place(round(self.rng.choice([0.0, self.rng.uniform(0.5, 250.0)]), 3), now)
            if self.stable():
                self.shown_g = self.load_g
            else:
                self.shown_g += (self.load_g - self.shown_g) * 0.3 + self.rng.gauss(0, 0.02)
            if self.mode == "stream" and not self.silent and now >= self._next_stream:
                self._next_stream = now + self.stream_interval_s
                self.write_line(self.line())

    def on_line(self, line: str) -> None:
        with self.lock:
            if self.silent:
                return
            cmd = line.strip().upper()
            if cmd in ("SI", "S", "Q"):
                self.write_raw(self.line().encode() + b"\r\n")
            elif cmd == "Z":
                self.place(0.0)
                self.write_raw(b"Z A\r\n")
            else:
                self.write_raw(b"ES\r\n")  # balances answer an unknown command with an error code


class VirtualScpiMeter(PtyDevice):
    kind = "meter"

    def __init__(self, link_path: str | None = None, *, name: str = "meter", seed: int = 1) -> None:
        super().__init__(link_path, name=name)
        self.rng = random.Random(seed)
        self.silent = False
        self._now = 0.0
        self.errors: list[str] = []

    def tick(self, now: float) -> None:
        self._now = now

    def temperature_c(self) -> float:
        return 24.0 + 1.5 * math.sin(self._now / 30.0) + self.rng.gauss(0, 0.01)

    def volts(self) -> float:
        return 1.2345 + self.rng.gauss(0, 0.0005)

    def on_line(self, line: str) -> None:
        with self.lock:
            if self.silent:
                return
            cmd = line.strip().upper()
            if cmd == "*IDN?":
                self.write_line("KARTECH,VTM-100,SN000417,1.2.0")
            elif cmd in ("MEAS:TEMP?", "MEASURE:TEMPERATURE?"):
                self.write_line(f"{self.temperature_c():+.6E}")
            elif cmd in ("MEAS:VOLT:DC?", "MEASURE:VOLTAGE:DC?"):
                self.write_line(f"{self.volts():+.6E}")
            elif cmd in ("SYST:ERR?", "SYSTEM:ERROR?"):
                self.write_line(self.errors.pop(0) if self.errors else '+0,"No error"')
            else:
                self.errors.append('-113,"Undefined header"')
