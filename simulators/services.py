"""Start real Mosquitto, InfluxDB 1.x and VictoriaMetrics servers on loopback with throwaway data directories.

Used by the test fixtures and the benchmarks. None of these servers can bind port 0 and report the port back, so
each launcher picks a free port and, if the server fails to bind it (another process took it in between), tries
again with a new one instead of hoping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


class ServiceUnavailable(RuntimeError):
    """A server binary is missing or did not come up."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_binary(name: str, *candidates: str) -> str:
    for c in (*candidates, shutil.which(name)):
        if c and os.path.exists(c):
            return c
    raise ServiceUnavailable(
        f"{name} not found; install Debian's package (apt-get install mosquitto influxdb victoria-metrics)"
    )


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


@dataclass
class _Proc:
    """A server process we started; stopped by its own PID only."""

    argv: list[str]
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "server.log"

    def spawn(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class _Server:
    """Common start/stop/restart for the three servers."""

    name = "server"

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"kartech-{self.name}-"))
        self.port = 0
        self._p: _Proc | None = None

    # subclasses fill these
    def _argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return _port_open(self.port)

    def start(self, timeout_s: float = 30.0, attempts: int = 5) -> None:
        last = ""
        for _ in range(attempts):
            if not self.port or _port_open(self.port):
                self.port = free_port()
            self._p = _Proc(self._argv(self.port), self.workdir, self.port)
            self._p.spawn()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if not self._p.alive():
                    break
                if self._ready():
                    return
                time.sleep(0.05)
            last = self._p.log_tail()
            self._p.stop(signal.SIGKILL)
            self.port = 0  # the port was probably taken: pick another
        raise ServiceUnavailable(f"{self.name} did not start in {self.workdir}:\n{last}")

    def restart(self, down_s: float = 0.0) -> None:
        """Stop and start again on the same port and data (a broker or database restart)."""
        self.stop()
        time.sleep(down_s)
        port = self.port
        self.start()
        if self.port != port:  # pragma: no cover - only if another process grabbed the port meanwhile
            raise ServiceUnavailable(f"{self.name} could not rebind port {port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._p is not None:
            self._p.stop(sig)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self._p.proc.pid if self._p and self._p.proc else None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Mosquitto(_Server):
    """Debian's mosquitto 2.x, anonymous, persistent, with no silent per-client queue limit."""

    name = "mosquitto"

    def __init__(self, workdir: Path | None = None, *, max_queued_messages: int = 0,
                 max_inflight_messages: int = 0, extra_conf: str = "") -> None:
        super().__init__(workdir)
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.extra_conf = extra_conf

    def _argv(self, port: int) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        (self.workdir / "data").mkdir(exist_ok=True)
        conf.write_text(
            f"listener {port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir / 'data'}/\n"
            "autosave_interval 1\n"
            f"max_queued_messages {self.max_queued_messages}\n"
            f"max_inflight_messages {self.max_inflight_messages}\n"
            "max_queued_bytes 0\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra_conf}\n"
        )
        return [find_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)]

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"


class InfluxDB1(_Server):
    """Debian's influxd 1.6 with everything pointed at a throwaway directory."""

    name = "influxdb"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.rpc_port = 0

    def _argv(self, port: int) -> list[str]:
        self.rpc_port = free_port()
        d = self.workdir
        conf = d / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "{LOOPBACK}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            f'  cache-snapshot-write-cold-duration = "10s"\n'
            f'[http]\n  bind-address = "{LOOPBACK}:{port}"\n  log-enabled = false\n'
            f'  max-body-size = 0\n'
            '[ifql]\n  enabled = false\n'
            '[monitor]\n  store-enabled = false\n'
            '[continuous_queries]\n  enabled = false\n'
            '[logging]\n  level = "warn"\n'
        )
        return [find_binary("influxd", "/usr/bin/influxd"), "-config", str(conf)]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def query(self, q: str, db: str | None = None, epoch: str = "ns") -> list[dict[str, object]]:
        """Run InfluxQL; return the list of series of the first statement (empty when no rows)."""
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        r = httpx.post(f"{self.url}/query", params=params, timeout=30)
        r.raise_for_status()
        res = r.json()["results"][0]
        if "error" in res:
            raise RuntimeError(res["error"])
        return list(res.get("series", []))

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')


class VictoriaMetrics(_Server):
    """Debian's victoria-metrics: accepts InfluxDB line protocol at /write and /api/v2/write."""

    name = "victoria-metrics"

    def _argv(self, port: int) -> list[str]:
        return [
            find_binary("victoria-metrics", "/usr/bin/victoria-metrics"),
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr={LOOPBACK}:{port}",
            "-loggerLevel=ERROR",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-retentionPeriod=100y",
        ]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, object]]:
        """Everything stored that matches a series selector, as parsed JSON lines of /api/v1/export."""
        import json

        httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        r = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=30)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]


@contextlib.contextmanager
def running(server: _Server) -> Iterator[_Server]:
    server.start()
    try:
        yield server
    finally:
        server.close()
