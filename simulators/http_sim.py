"""A small HTTP/1.1 server for simulated network printers, on its own thread and event loop.

Plain asyncio streams rather than a framework, so that a simulator controls every byte a printer's embedded web
server sends (status line, `WWW-Authenticate`, an empty 204, keep-alive) and can fail like one: `go_away()`
closes the listener and every open connection (the printer switched off), `come_back()` listens on the same port
again.

`HttpSim(app)` serves `app.handle(request) -> Response`, which runs on the server's loop and must not block;
the simulated device stays reachable as `sim.app`. `HttpLab` is the virtual-lab part of such printers: one
`HttpSim` per machine whose url is on this host.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

from gateway.config.models import MachineBase

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 500: "Internal Server Error"}
MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as sent: path and query
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class App(Protocol):
    def handle(self, req: Request) -> Response: ...


A = TypeVar("A", bound=App)


class HttpSim(Generic[A]):
    """A simulated device (`app`) behind its own little web server."""

    def __init__(self, app: A, *, host: str = "127.0.0.1", port: int = 0, name: str = "http") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self.requests = 0  # answered, for tests
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifetime (called from any thread) -----------------------------------------------------------------
    def start(self) -> str:
        """Start the thread and listen; returns the base URL (the port is chosen by the system when it was 0)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"sim-{self.name}", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except OSError:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None

    def go_away(self) -> None:
        """The printer is switched off: nothing listens, open connections are cut."""
        self._call(self._close())

    def come_back(self) -> None:
        """Switched on again, on the same port."""
        self._call(self._listen())

    def _call(self, coro: object) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    # --- on the server's loop ------------------------------------------------------------------------------
    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                resp = self.app.handle(request)
                close = request.headers.get("connection", "").lower() == "close"
                writer.write(_encode(resp, close))
                await writer.drain()
                self.requests += 1
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed the connection between requests
    except asyncio.LimitOverrunError as err:
        raise ValueError("request head too long") from err
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError("request head too long")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)


def _encode(resp: Response, close: bool) -> bytes:
    head = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}",
            f"Content-Type: {resp.content_type}",
            f"Connection: {'close' if close else 'keep-alive'}",
            f"Content-Length: {len(resp.body)}"]
    head += [f"{k}: {v}" for k, v in resp.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body


class HttpLab(Generic[A]):
    """The virtual-lab part of an HTTP printer simulator: `sims` by machine id, started, stopped and pointed at
    together. A subclass fills `sims` (with `local_port` deciding which machines it serves) and says `describe`."""

    machine_type: ClassVar[type[MachineBase]]

    def __init__(self) -> None:
        self.sims: dict[str, HttpSim[A]] = {}

    @staticmethod
    def local_port(url: str, free_ports: bool) -> int | None:
        """The port to serve a machine's `url` on (0: any free one), or None when it is not on this host (or has
        a path: a printer behind a reverse proxy)."""
        host, _, rest = url.split("://", 1)[1].partition(":")
        if host not in ("127.0.0.1", "localhost") or "/" in rest:
            return None
        return 0 if free_ports else int(rest or 80)

    def start(self) -> None:
        for s in self.sims.values():
            s.start()

    def stop(self) -> None:
        for s in self.sims.values():
            s.stop()

    def reachable(self, machine: MachineBase) -> MachineBase:
        if isinstance(machine, self.machine_type) and machine.id in self.sims:
            return machine.model_copy(update={"url": self.sims[machine.id].url})
        return machine
