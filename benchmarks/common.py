"""Shared by the benchmarks and the durability tests: the gateway as a separate process, the load generator, exact
reconciliation with InfluxDB, and CPU/RSS figures from /proc.

Everything runs on loopback; every process started here is stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from simulators.services import LOOPBACK, InfluxDB1, Mosquitto, free_port

TOKEN_ENV = "KARTECH_BENCH_TOKEN"
TOKEN = "bench-token-0123456789abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PRINTER_KIND = "printer"
SIGNALS_PER_MESSAGE = 4  # nozzle_temp, bed_temp, layer, state


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def mosquitto() -> Mosquitto:
    """A broker for benchmarks: no silent queue limit, no periodic dump of a large queue to disk."""
    return Mosquitto(extra_conf="autosave_interval 3600\npersistence false\n")


# --- the gateway under test ------------------------------------------------------------------------------------
def gateway_yaml(*, site: str, broker_port: int, influx_url: str, database: str, data_dir: Path, api_port: int,
                 machines: int = 200, prefix: str = "p-", topic: str = "bench", batch_size: int = 10_000,
                 flush_interval_s: float = 0.1, queue_size: int = 100_000, outbox_max_bytes: int = 1 << 30,
                 when_full: str = "backpressure", commit_interval_s: float = 0.02, session_expiry_s: int = 3600,
                 keepalive_s: int = 30) -> str:
    """A site file: `machines` printers publishing to <topic>/<site>/<machine>/report, written to InfluxDB 1.x."""
    lines = [
        f"site: {{id: {site}, name: Benchmark}}",
        "storage:",
        f"  data_dir: {json.dumps(str(data_dir))}",
        f"  queue_size: {queue_size}",
        "  local_history: {enabled: false}",
        f"  outbox: {{max_bytes: {outbox_max_bytes}, when_full: {when_full}, commit_interval_s: {commit_interval_s}}}",
        f"  influxdb: {{version: 1, url: \"{influx_url}\", database: {database}, batch_size: {batch_size},",
        f"             flush_interval_s: {flush_interval_s}, timeout_s: 10}}",
        "api:",
        f"  port: {api_port}",
        f"  tokens: [{{name: bench, token: \"${{{TOKEN_ENV}}}\", role: admin}}]",
        "mqtt:",
        "  brokers:",
        f"    - {{id: lab, host: {LOOPBACK}, port: {broker_port}, client_id: gw-{site}, "
        f"session_expiry_s: {session_expiry_s}, keepalive_s: {keepalive_s}}}",
        "x-printer: &printer",
        f"  kind: {PRINTER_KIND}",
        "  driver: mqtt",
        "  broker: lab",
        "  topics:",
        f"    - topic: {topic}/{{site}}/{{machine}}/report",
        "      timestamp: {path: ts, format: unix_ms}",
        "      fields:",
        "        nozzle_temp: {unit: degC}",
        "        bed_temp: {unit: degC}",
        "        layer: {type: int}",
        "        state: {type: string}",
        "machines:",
    ]
    for i in range(machines):
        lines.append(f"  - {{<<: *printer, id: {prefix}{i:03d}, name: Printer {i}}}")
    return "\n".join(lines) + "\n"


def kartech_argv() -> list[str]:
    exe = Path(sys.executable).with_name("kartech")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]


@dataclass
class Metrics:
    """A /metrics scrape: value by (name, labels)."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def total(self, name: str, **match: str) -> float:
        want = set(match.items())
        return sum(v for (n, lbl), v in self.samples.items() if n == name and want <= set(lbl))


def parse_metrics(text: str, prefix: str = "kartech_") -> Metrics:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = tuple(sorted(
            (k, v.strip('"')) for k, _, v in (p.partition("=") for p in rest.rstrip("}").split(",") if p)
        ))
        out[(name.removeprefix(prefix), labels)] = float(value)
    return Metrics(out)


class GatewayProcess:
    """`kartech run --config FILE` as a child process: started, probed over HTTP, stopped or killed by its PID."""

    def __init__(self, workdir: Path, make_yaml: Callable[[int], str], *, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.make_yaml = make_yaml  # api port -> site file text
        self.config = workdir / "site.yaml"
        self.log_path = workdir / "gateway.log"
        self.env = {**os.environ, TOKEN_ENV: TOKEN, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_port = 0
        self.starts = 0
        self.preexec: Callable[[], None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def start(self, *, timeout_s: float = 120.0, wait_connected: bool = True) -> None:
        """Start and wait until the API answers (and the drivers are connected); retries on a taken API port."""
        for _ in range(3):
            if not self.api_port:
                self.api_port = free_port()
            self.config.write_text(self.make_yaml(self.api_port))
            with open(self.log_path, "ab") as out:
                out.write(f"--- start {self.starts + 1} ---\n".encode())
                out.flush()
                self.proc = subprocess.Popen([*kartech_argv(), "run", "--config", str(self.config)],
                                             stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                             cwd=self.workdir, preexec_fn=self.preexec)
            self.starts += 1
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.proc.poll() is None:
                h = self.try_health()
                if h is not None and (not wait_connected or all(d["connected"] for d in h["drivers"].values())):
                    return
                time.sleep(0.1)
            if self.proc.poll() is None:
                raise RuntimeError(f"gateway did not become ready in {timeout_s} s:\n{self.log_tail()}")
            if "address already in use" not in self.log_tail().lower():
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            self.api_port = 0
        raise RuntimeError(f"gateway could not bind an API port:\n{self.log_tail()}")

    def try_health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.url}/api/v1/health", timeout=5)  # slow while a backlog is drained
        except httpx.HTTPError:
            return None
        return dict(r.json()) if r.status_code == 200 else None

    def health(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/health", timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def metrics(self, attempts: int = 3) -> Metrics:
        """A /metrics scrape; retried, since a gateway catching up on a large backlog may answer slowly."""
        for attempt in range(attempts):
            try:
                r = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
                r.raise_for_status()
                return parse_metrics(r.text)
            except httpx.HTTPError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError(f"gateway did not stop on SIGTERM in {timeout_s} s:\n{self.log_tail()}") from None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# --- /proc figures ---------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ProcSampler:
    """CPU % (of one core) over a window and the peak RSS seen by sampling every 0.25 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = self._c0 = 0.0
        self.cpu_pct = 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self.pid))
            except OSError:
                return

    def __enter__(self) -> ProcSampler:
        self._t0, self._c0 = time.monotonic(), cpu_seconds(self.pid)
        self.peak_rss_mb = rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_pct = 100 * (cpu_seconds(self.pid) - self._c0) / max(1e-9, time.monotonic() - self._t0)


# --- load ------------------------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    sent: int = 0
    acked: int = 0
    bad_acks: int = 0
    elapsed_s: float = 0.0
    machines: dict[str, list[int]] = field(default_factory=dict)  # id -> [count, sum(layer), first ts, last ts]

    @property
    def rate(self) -> float:
        return self.acked / self.elapsed_s if self.elapsed_s else 0.0

    def merge(self, other: LoadResult) -> None:
        self.sent += other.sent
        self.acked += other.acked
        self.bad_acks += other.bad_acks
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        for m, (n, s, first, last) in other.machines.items():
            mine = self.machines.get(m)
            if mine is None:
                self.machines[m] = [n, s, first, last]
            else:
                self.machines[m] = [mine[0] + n, mine[1] + s, min(mine[2], first), max(mine[3], last)]


class Load:
    """Several load-generator processes publishing together for the 200 printers; bounded in time and count."""

    def __init__(self, port: int, *, topic: str, rate: float, seconds: float, count: int = 10**9,
                 publishers: int = 2, machines: int = 200, prefix: str = "p-", seq_start: int = 0,
                 window: int = 20_000) -> None:
        start_at = time.time() + 0.3
        self.procs: list[subprocess.Popen[bytes]] = []
        per_count = max(1, count // publishers) if count < 10**9 else count
        for i in range(publishers):
            argv = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--topic", topic,
                    "--prefix", prefix, "--machines", str(machines), "--shard", f"{i}/{publishers}",
                    "--rate", str(rate / publishers), "--seconds", str(seconds), "--count", str(per_count),
                    "--seq-start", str(seq_start), "--start-at", str(start_at), "--window", str(window)]
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=Path(__file__).parents[1]))
        self.deadline = time.monotonic() + seconds + 120

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait(self) -> LoadResult:
        total = LoadResult()
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=max(1.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise RuntimeError("load generator did not finish in time") from None
            if p.returncode != 0:
                raise RuntimeError(f"load generator failed with exit code {p.returncode}")
            d = json.loads(out)
            total.merge(LoadResult(d["sent"], d["acked"], d["bad_acks"], d["elapsed_s"], d["machines"]))
        return total

    def stop(self) -> None:
        """Stop publishing now; the generators still collect acknowledgements and report."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def publish(port: int, **kw: object) -> LoadResult:
    return Load(port, **kw).wait()  # type: ignore[arg-type]


# --- reconciliation --------------------------------------------------------------------------------------------
@dataclass
class Reconciled:
    published: int
    stored: int
    lost: int
    duplicates: int
    mismatched_series: list[str]

    def line(self) -> str:
        return f"published={self.published} stored={self.stored} lost={self.lost} duplicates={self.duplicates}"


def stored_series(influx: InfluxDB1, db: str, first_ms: int, last_ms: int,
                  measurement: str = PRINTER_KIND) -> dict[str, tuple[int, int]]:
    """machine -> (count, sum of layer) stored between two timestamps (inclusive)."""
    q = (f'SELECT count("layer"), sum("layer") FROM "{measurement}" WHERE time >= {first_ms}ms '
         f"AND time <= {last_ms}ms GROUP BY machine")
    # a long window (a 10-minute outage: over a million points) takes InfluxDB a while to aggregate
    r = httpx.post(f"{influx.url}/query", params={"q": q, "db": db, "epoch": "ns"}, timeout=300)
    r.raise_for_status()
    res = r.json()["results"][0]
    if "error" in res:
        raise RuntimeError(res["error"])
    out: dict[str, tuple[int, int]] = {}
    for s in res.get("series", []):
        tags = s.get("tags") or {}
        values = s["values"]
        assert isinstance(tags, dict)
        assert isinstance(values, list)
        # a series with no point in the window yet answers null (seen while InfluxDB is still taking a write)
        out[str(tags["machine"])] = (int(values[0][1] or 0), int(values[0][2] or 0))
    return out


def reconcile(influx: InfluxDB1, db: str, expected: LoadResult) -> Reconciled:
    """Per machine: the count and sum of `layer` stored must equal what was published, no more, no less."""
    if not expected.machines:
        return Reconciled(0, 0, 0, 0, [])
    first = min(m[2] for m in expected.machines.values())
    last = max(m[3] for m in expected.machines.values())
    got = stored_series(influx, db, first, last)
    lost = dup = stored = 0
    bad: list[str] = []
    for m in sorted(set(expected.machines) | set(got)):
        n, s = expected.machines.get(m, [0, 0])[:2]
        gn, gs = got.get(m, (0, 0))
        stored += gn
        lost += max(0, n - gn)
        dup += max(0, gn - n)
        if (n, s) != (gn, gs):
            bad.append(m)
    return Reconciled(sum(m[0] for m in expected.machines.values()), stored, lost, dup, bad)


def wait_stored(influx: InfluxDB1, db: str, expected: LoadResult, timeout_s: float,
                poll_s: float = 0.25) -> tuple[Reconciled, float]:
    """Poll until everything published is stored (or timeout); returns the reconciliation and seconds waited."""
    t0 = time.monotonic()
    while True:
        r = reconcile(influx, db, expected)
        if (r.lost == 0 and not r.mismatched_series) or time.monotonic() - t0 > timeout_s:
            return r, time.monotonic() - t0
        time.sleep(poll_s)


# --- latency ---------------------------------------------------------------------------------------------------
class LatencyProbe:
    """Publish-to-queryable latency: polls InfluxDB for new points of one machine; the ts is the publish time."""

    def __init__(self, influx: InfluxDB1, db: str, machine: str, interval_s: float = 0.02) -> None:
        self.url = f"{influx.url}/query"
        self.db = db
        self.machine = machine
        self.interval_s = interval_s
        self.samples_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_ms = int(time.time() * 1000)
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(self.interval_s):
                q = f"SELECT \"layer\" FROM \"{PRINTER_KIND}\" WHERE machine = '{self.machine}' AND time > {last_ms}ms"
                try:
                    r = client.get(self.url, params={"db": self.db, "q": q, "epoch": "ms"})
                except httpx.HTTPError:
                    continue
                now_ms = time.time() * 1000
                series = r.json()["results"][0].get("series") or []
                for ts, _ in series[0]["values"] if series else []:
                    self.samples_ms.append(now_ms - ts)
                    last_ms = max(last_ms, int(ts))

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def percentile(self, p: float) -> float:
        if len(self.samples_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[int(p) - 1]


# --- raw ceilings ----------------------------------------------------------------------------------------------
def influx_write_ceiling(influx: InfluxDB1, db: str, seconds: float, writers: int = 2,
                         batch: int = 5000) -> float:
    """Points per second InfluxDB accepts as pre-built line protocol batches from `writers` threads."""
    influx.create_database(db)
    bodies = []
    base_ms = int(time.time() * 1000) - 3_600_000
    for b in range(40):
        bodies.append("\n".join(
            f'{PRINTER_KIND},machine=p-{i % 200:03d},site=ceiling nozzle_temp=210.5,bed_temp=60.1,layer={i}i,'
            f'state="printing" {base_ms + b * batch + i}'
            for i in range(batch)).encode())
    points = [0] * writers
    stop_at = time.monotonic() + seconds

    def writer(k: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = k
            while time.monotonic() < stop_at:
                r = client.post(f"{influx.url}/write", params={"db": db, "precision": "ms"},
                                content=bodies[i % len(bodies)])
                r.raise_for_status()
                points[k] += batch
                i += writers

    t0 = time.monotonic()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(points) / (time.monotonic() - t0)


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
