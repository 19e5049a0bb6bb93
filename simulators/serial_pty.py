"""A simulated serial device on a pseudo-terminal, reachable at a stable path (like /dev/serial/by-id links).

The pty's slave name (/dev/pts/N) is only known once it exists and changes on every "replug", so the device
creates a symlink at the path the site config names and moves it atomically to each new pty. One thread per device
reads host lines from the master side, answers them and steps the device's model (`tick`). Everything the host
sent is kept in `received`, across replugs, so tests can check exactly what a driver sent.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import pty
import select
import threading
import time
import tty
from pathlib import Path

log = logging.getLogger(__name__)

TICK_S = 0.05


class PtyDevice(abc.ABC):
    """Subclasses implement `on_line` (a host line arrived) and `tick` (time passed)."""

    kind = "device"

    def __init__(self, link_path: str | os.PathLike[str] | None = None, *, name: str = "device") -> None:
        self.link_path = Path(link_path) if link_path is not None else None
        self.name = name
        self.received: list[str] = []
        self.lock = threading.RLock()
        self.garble = False  # output as a receiver at the wrong baud rate would see it
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self._inbuf = bytearray()
        self.chunk = 0  # counts reads from the host: lines with the same number arrived in one write (or burst)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.plugged = threading.Event()

    # --- lifetime -----------------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """What a gateway should open: the stable link if there is one, else the pty itself."""
        return str(self.link_path) if self.link_path is not None else self.slave_name

    def start(self) -> None:
        self.plug()
        self._thread = threading.Thread(target=self._run, name=f"pty:{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()

    def plug(self) -> None:
        """Create a fresh pty and point the stable link at it (a device plugged in)."""
        with self.lock:
            if self._master is not None:
                return
            master, slave = pty.openpty()
            tty.setraw(slave)  # no echo, no newline translation before a host has opened it
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self.slave_name = os.ttyname(slave)
            self._inbuf.clear()
            if self.link_path is not None:
                self.link_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}.tmp")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                tmp.symlink_to(self.slave_name)
                os.replace(tmp, self.link_path)
            self.plugged.set()
        log.debug("%s plugged in at %s", self.name, self.path)

    def unplug(self) -> None:
        """Close the pty (a cable pulled): the host's reads fail at once; the link is removed."""
        with self.lock:
            self.plugged.clear()
            if self.link_path is not None:
                with contextlib.suppress(OSError):
                    if os.readlink(self.link_path) == self.slave_name:
                        self.link_path.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None

    # --- I/O ----------------------------------------------------------------------------------------------
    def write_raw(self, data: bytes) -> None:
        """Bytes to the host; dropped when nobody reads (as a USB device's output is)."""
        with self.lock:
            if self._master is None:
                return
            if self.garble:
                data = bytes(b if b in (0x0A, 0x0D) else ((b * 7 + 0x85) & 0xFF) | 0x80 for b in data)
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._master, data)

    def write_line(self, text: str) -> None:
        self.write_raw(text.encode("utf-8") + b"\n")

    def received_lines(self) -> list[str]:
        with self.lock:
            return list(self.received)

    def _run(self) -> None:
        while not self._stop.is_set():
            master = self._master
            if master is None:
                self._stop.wait(TICK_S)
                self._safe_tick()
                continue
            try:
                ready, _, _ = select.select([master], [], [], TICK_S)
            except (OSError, ValueError):
                ready = []
            if ready:
                try:
                    data = os.read(master, 4096)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError:
                    data = b""
                    self._stop.wait(TICK_S)  # no host has the slave open: nothing to read
                if data:
                    self._feed(data)
            self._safe_tick()

    def _safe_tick(self) -> None:
        try:
            self.tick(time.monotonic())
        except Exception:  # a simulator bug must show, not kill the thread silently
            log.exception("%s: simulator tick failed", self.name)

    def _feed(self, data: bytes) -> None:
        self.chunk += 1
        self._inbuf += data
        while True:
            idx = min((i for i in (self._inbuf.find(b"\n"), self._inbuf.find(b"\r")) if i >= 0), default=-1)
            if idx < 0:
                return
            raw = bytes(self._inbuf[:idx])
            del self._inbuf[: idx + 1]
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            with self.lock:
                self.received.append(line)
            try:
                self.on_line(line)
            except Exception:
                log.exception("%s: simulator failed to answer %r", self.name, line)

    # --- for subclasses -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def on_line(self, line: str) -> None:
        """Answer one line the host sent."""

    @abc.abstractmethod
    def tick(self, now: float) -> None:
        """Called about every TICK_S seconds of wall time (`now` is time.monotonic())."""

    def describe(self) -> str:
        return f"{self.kind} {self.name} on {self.path}" + (f" -> {self.slave_name}" if self.link_path else "")
