"""Serial transport: open a port the safe way, read what is waiting, split lines ourselves, classify garbage.

pyserial's `readline()` makes one system call per byte; here the event loop watches the file descriptor and each
wake-up reads everything that is waiting with one `os.read`. Errors from opening are translated into messages a
technician can act on (which group to join, who holds the port, whether the device is plugged in).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import termios
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import serial

from drivers.serial.config import SerialMachine
from gateway.errors import DriverUnavailable

log = logging.getLogger(__name__)

PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
          "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}
ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}
READ_CHUNK = 65536
PARTIAL_LINE_TIMEOUT_S = 2.0
GARBLED_FRACTION = 0.25

BadReason = Literal["noise", "partial_line", "binary", "over_long", "garbled", "undecodable"]


@dataclass(frozen=True, slots=True)
class PortSettings:
    port: str
    baud_rate: int = 115200
    data_bits: int = 8
    parity: str = "none"
    stop_bits: float = 1
    line_ending: str = "lf"
    encoding: str = "utf-8"
    max_line_bytes: int = 1024

    @classmethod
    def of(cls, m: SerialMachine) -> PortSettings:
        return cls(port=m.port, baud_rate=m.baud_rate, data_bits=m.data_bits, parity=m.parity,
                   stop_bits=m.stop_bits, line_ending=m.line_ending, encoding=m.encoding,
                   max_line_bytes=m.max_line_bytes)


def open_port(s: PortSettings) -> serial.Serial:
    """Open `s.port` exclusively, without resetting the board, or raise DriverUnavailable saying what to do."""
    ser = serial.Serial()
    ser.port = s.port
    ser.baudrate = s.baud_rate
    ser.bytesize = s.data_bits
    ser.parity = PARITY[s.parity]
    ser.stopbits = s.stop_bits
    ser.timeout = 0
    ser.write_timeout = 2.0
    ser.exclusive = True
    # Boards with an auto-reset circuit (Arduino-style Marlin boards) restart when DTR rises: keep it low so that
    # connecting the gateway never kills a print running from the SD card.
    ser.dtr = False
    ser.rts = False
    try:
        ser.open()
    except (serial.SerialException, OSError) as err:
        raise DriverUnavailable(explain_open_error(s.port, err)) from err
    try:
        _no_hangup_on_close(ser.fileno())
        ser.reset_input_buffer()  # what waited in the kernel buffer is old, and usually half a line
    except (OSError, termios.error, serial.SerialException) as err:
        ser.close()
        raise DriverUnavailable(f"{s.port}: cannot set up the port: {err}") from err
    return ser


def _no_hangup_on_close(fd: int) -> None:
    """Clear HUPCL so that closing (and later reopening) the port does not toggle DTR and reset the board."""
    attrs = termios.tcgetattr(fd)
    if attrs[2] & termios.HUPCL:
        attrs[2] &= ~termios.HUPCL
        termios.tcsetattr(fd, termios.TCSANOW, attrs)


def explain_open_error(port: str, err: BaseException) -> str:
    """The reason a port could not be opened, in words that say what to do."""
    code = getattr(err, "errno", None)
    text = str(err)
    path = Path(port)
    if code == errno.ENOENT or (not path.exists() and "No such file" in text) or not path.exists():
        by_id = Path("/dev/serial/by-id")
        present = sorted(p.name for p in by_id.iterdir()) if by_id.is_dir() else []
        hint = ("devices present in /dev/serial/by-id: " + ", ".join(present)) if present else \
            "no USB serial device is present in /dev/serial/by-id"
        return f"{port} does not exist: is the device plugged in and powered? ({hint})"
    if code == errno.EACCES or "Permission denied" in text:
        group = _group_of(path)
        user = _user()
        return (f"permission denied opening {port}: it belongs to group {group!r}; add the gateway's user to it "
                f"(sudo usermod -aG {group} {user}) and restart the gateway (a new login is needed for the group)")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text or "busy" in text:
        holders = port_holders(port)
        who = f" (held by {', '.join(holders)})" if holders else ""
        return (f"{port} is in use by another program{who}; a serial port has one owner: stop OctoPrint, Klipper, "
                "a slicer or a terminal on this port, or let that program report the machine instead")
    return f"cannot open {port}: {text}"


def _group_of(path: Path) -> str:
    try:
        return grp.getgrgid(path.stat().st_gid).gr_name
    except (OSError, KeyError):
        return "dialout"


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return "$USER"


def port_holders(port: str) -> list[str]:
    """Processes (name[pid]) that have `port` open, as far as this user may see."""
    try:
        target = os.path.realpath(port)
    except OSError:
        return []
    out: list[str] = []
    me = os.getpid()
    with contextlib.suppress(OSError):
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == me:
                continue
            try:
                for fd in (pid_dir / "fd").iterdir():
                    if os.path.realpath(fd) == target:
                        name = (pid_dir / "comm").read_text().strip()
                        out.append(f"{name}[{pid_dir.name}]")
                        break
            except OSError:
                continue
    return out


@dataclass(frozen=True, slots=True)
class Line:
    text: str


@dataclass(frozen=True, slots=True)
class Bad:
    reason: BadReason
    detail: str


class LineSplitter:
    """Bytes in, text lines and classified garbage out. Lines may end in LF, CR LF or CR."""

    def __init__(self, *, max_line_bytes: int = 1024, encoding: str = "utf-8",
                 partial_timeout_s: float = PARTIAL_LINE_TIMEOUT_S) -> None:
        self.max_line_bytes = max_line_bytes
        self.encoding = encoding
        self.partial_timeout_s = partial_timeout_s
        self._buf = bytearray()
        self._discarding = False  # inside an over-long line: drop bytes until its end
        self._last_data = 0.0

    def feed(self, data: bytes, now: float) -> list[Line | Bad]:
        out: list[Line | Bad] = []
        if self._buf and now - self._last_data > self.partial_timeout_s:
            out.append(self._partial())
        self._last_data = now
        self._buf += data
        while True:
            cut = _find_eol(self._buf)
            if cut is None:
                break
            start, end = cut
            raw = bytes(self._buf[:start])
            del self._buf[:end]
            if self._discarding:
                self._discarding = False
                continue
            if raw:
                out.append(self.classify(raw))
        if len(self._buf) > self.max_line_bytes:
            if not self._discarding:
                out.append(Bad("over_long", f"line longer than {self.max_line_bytes} bytes: "
                                            f"{_preview(bytes(self._buf))}"))
            self._discarding = True
            self._buf.clear()
        return out

    def expire(self, now: float) -> list[Line | Bad]:
        """A fragment with no line end for a while is a partial line (cut by a reset, a replug or noise)."""
        if self._buf and now - self._last_data > self.partial_timeout_s:
            return [self._partial()]
        return []

    def _partial(self) -> Bad:
        frag = bytes(self._buf)
        self._buf.clear()
        self._discarding = False
        return Bad("partial_line", f"no line end after {self.partial_timeout_s:.0f} s: {_preview(frag)}")

    def classify(self, raw: bytes) -> Line | Bad:
        if (boot := _boot_marker(raw)) is not None:
            return Line(boot)
        if len(raw) > self.max_line_bytes:
            return Bad("over_long", f"line longer than {self.max_line_bytes} bytes: {_preview(raw)}")
        odd = sum(1 for b in raw if b >= 0x80 or (b < 0x20 and b != 0x09) or b == 0x7F)
        if odd and odd >= GARBLED_FRACTION * len(raw):
            return Bad("garbled", f"{odd} of {len(raw)} bytes are not text (wrong baud rate?): {_preview(raw)}")
        if any((b < 0x20 and b != 0x09) or b == 0x7F for b in raw):
            return Bad("binary", f"control bytes inside a text line: {_preview(raw)}")
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError:
            return Bad("undecodable", f"not {self.encoding} text: {_preview(raw)}")
        text = text.strip()
        if not text:
            return Bad("noise", "blank line")
        return Line(text)


def _is_junk(b: int) -> bool:
    return b >= 0x80 or b < 0x20 or b == 0x7F


def _boot_marker(raw: bytes) -> str | None:
    """`start` (or `echo:start`) behind the bytes a resetting board puts on the wire: the boot must not be missed."""
    text = raw.strip()
    for marker in (b"echo:start", b"start"):
        if text.endswith(marker) and len(text) > len(marker) and all(map(_is_junk, text[:-len(marker)])):
            return marker.decode()
    return None


def _find_eol(buf: bytearray) -> tuple[int, int] | None:
    """(end of line content, start of next line) of the first complete line, or None."""
    lf = buf.find(b"\n")
    cr = buf.find(b"\r")
    if lf < 0 and cr < 0:
        return None
    if cr >= 0 and (lf < 0 or cr < lf):
        if cr + 1 < len(buf) and buf[cr + 1] == 0x0A:
            return cr, cr + 2
        if cr + 1 == len(buf):
            return None  # a CR at the very end may be followed by LF in the next read
        return cr, cr + 1
    return lf, lf + 1


def _preview(raw: bytes, limit: int = 40) -> str:
    shown = raw[:limit]
    text = shown.decode("ascii", "backslashreplace")
    return repr(text) + ("..." if len(raw) > limit else "")


class PortLost(Exception):
    """The device went away (unplugged, powered off, or the pty was closed)."""


class SerialLink:
    """An open port on the event loop: `next_item()` yields lines and garbage; `send()` writes one line."""

    def __init__(self, ser: serial.Serial, settings: PortSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ser = ser
        self.settings = settings
        self._clock = clock
        self._fd = ser.fileno()
        self._splitter = LineSplitter(max_line_bytes=settings.max_line_bytes, encoding=settings.encoding)
        self._items: deque[Line | Bad] = deque()
        self._wake = asyncio.Event()
        self._lost: str | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True
        self.last_rx = self._clock()
        self.bytes_in = 0
        self.eol = ENDINGS[settings.line_ending]

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            self._set_lost(f"{self.settings.port}: device disconnected ({os.strerror(err.errno or 0)})")
            return
        if not data:
            self._set_lost(f"{self.settings.port}: device disconnected (end of file)")
            return
        now = self._clock()
        self.last_rx = now
        self.bytes_in += len(data)
        self._items.extend(self._splitter.feed(data, now))
        self._wake.set()

    def _set_lost(self, why: str) -> None:
        self._lost = why
        self._stop_reading()
        self._wake.set()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)

    async def next_item(self, timeout_s: float) -> Line | Bad | None:
        """The next line or bad-input item; None after `timeout_s` without one. Raises PortLost."""
        deadline = self._clock() + max(0.0, timeout_s)
        while True:
            if self._items:
                return self._items.popleft()
            if self._lost is not None:
                raise PortLost(self._lost)
            expired = self._splitter.expire(self._clock())
            if expired:
                self._items.extend(expired)
                continue
            left = deadline - self._clock()
            if left <= 0:
                return None
            self._wake.clear()
            # wake at least every partial-line timeout so stale fragments are reported; asyncio.timeout (unlike
            # wait_for in 3.11) never swallows a cancellation that races with the timeout
            try:
                async with asyncio.timeout(min(left, PARTIAL_LINE_TIMEOUT_S)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def send(self, line: str) -> None:
        data = line.encode("ascii", "replace") + self.eol
        if self._lost is not None:
            raise PortLost(self._lost)
        try:
            await asyncio.to_thread(self._write, data)
        except (OSError, serial.SerialException) as err:
            self._set_lost(f"{self.settings.port}: write failed, device disconnected? ({err})")
            raise PortLost(self._lost or "") from err

    def _write(self, data: bytes) -> None:
        self.ser.write(data)
        self.ser.flush()

    def close(self) -> None:
        self._stop_reading()
        with contextlib.suppress(Exception):
            self.ser.close()
