"""OPC UA load: one gateway process subscribed to many monitored items spread over simulator servers.

    python -m benchmarks.opcua            # 10,000 items over 4 servers, 1 s sampling, 120 s measured
    python -m benchmarks.opcua --quick    # 2,000 items over 2 servers, 20 s measured

Each simulator server runs in its own process (spawned) on loopback and changes every one of its variables once a
second, stamping each value with its source time. This process runs one `OpcuaDriver` per server (as the gateway
does: one connection per machine) and hands every batch to a counting context at the pipeline's entrance, which
records notifications/s and the lag from source timestamp to gateway receipt. CPU % and RSS are this process's
own (the servers are the cost to watch on a small box, so they are kept apart). Ends with one line:

    opcua: items=<n> notifications_per_s=<x> p99_lag_ms=<y> cpu_pct=<z> rss_mb=<m>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from drivers.opcua.config import OpcuaMachine
from drivers.opcua.driver import OpcuaDriver
from gateway.reading import Reading
from simulators.opcua_sim import BULK_NS, OpcuaSimServer


def _server_main(items: int, conn: Connection) -> None:
    sim = OpcuaSimServer([], extra_variables=items, interval_s=1.0)
    try:
        conn.send(sim.start(timeout_s=300))
        conn.recv()  # until the parent says stop (or goes away)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        sim.stop()


class _Counter:
    """The part of DriverContext a driver uses, measuring instead of forwarding."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_connected = False
        self.measuring = False
        self.count = 0
        self.lag_hist: dict[int, int] = {}  # lag in whole ms -> count (a list would grow the RSS being measured)
        self.bad = 0

    async def emit(self, readings: Sequence[Reading], ack: Any = None) -> None:
        if not self.measuring:
            return
        self.count += len(readings)
        hist = self.lag_hist
        for r in readings:
            ms = (r.receive_ns - r.source_ns) // 1_000_000
            hist[ms] = hist.get(ms, 0) + 1

    def connected(self, machine_ids: Any = None) -> None:
        self.is_connected = True

    def bad_input(self, reason: str, machine: str | None, detail: str) -> None:
        self.bad += 1


def _percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= q * total:
            return float(ms)
    return float(max(hist))


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _machine(i: int, endpoint: str, items: int, publishing_s: float) -> OpcuaMachine:
    return OpcuaMachine.model_validate({
        "id": f"bulk-{i}", "name": f"Bulk server {i}", "kind": "plc", "driver": "opcua", "endpoint": endpoint,
        "security": {"policy": "None"}, "namespace": BULK_NS, "sampling_interval_s": 1.0,
        "publishing_interval_s": publishing_s, "queue_size": 2, "timeout_s": 30, "watchdog_s": 5,
        "expected_interval_s": 10,
        "signals": {f"v{k}": {"node": f"s=Bulk.V{k}", "type": "float"} for k in range(items)},
    })


async def _measure(endpoints: list[str], per_server: int, seconds: float, publishing_s: float) -> dict[str, float]:
    drivers = [OpcuaDriver(_machine(i, ep, per_server, publishing_s)) for i, ep in enumerate(endpoints)]
    ctxs = [_Counter(d.name) for d in drivers]
    tasks = [asyncio.create_task(d.run(c)) for d, c in zip(drivers, ctxs, strict=True)]  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(300):
            while not all(c.is_connected for c in ctxs):
                for t in tasks:
                    if t.done():
                        t.result()
                await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # let the first full round (initial values) pass
        for c in ctxs:
            c.measuring = True
        rss0, cpu0, t0 = _rss_mb(), _cpu_s(), time.monotonic()
        rss_samples = [rss0]
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(min(5.0, seconds))
            rss_samples.append(_rss_mb())
            for t in tasks:
                if t.done():
                    t.result()
        wall = time.monotonic() - t0
        cpu = _cpu_s() - cpu0
        for c in ctxs:
            c.measuring = False
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    hist: dict[int, int] = {}
    for c in ctxs:
        for ms, k in c.lag_hist.items():
            hist[ms] = hist.get(ms, 0) + k
    n = sum(c.count for c in ctxs)
    return {
        "notifications_per_s": n / wall,
        "p50_lag_ms": _percentile(hist, 0.50),
        "p99_lag_ms": _percentile(hist, 0.99),
        "cpu_pct": 100.0 * cpu / wall,
        "rss_start_mb": rss_samples[1] if len(rss_samples) > 1 else rss0,
        "rss_mb": rss_samples[-1],
        "bad": float(sum(c.bad for c in ctxs)),
        "seconds": wall,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.opcua", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 items over 2 servers for 20 s")
    p.add_argument("--items", type=int, default=None, help="monitored items in total (default 10,000)")
    p.add_argument("--servers", type=int, default=None, help="simulator server processes (default 4)")
    p.add_argument("--seconds", type=float, default=None, help="measured duration (default 120)")
    p.add_argument("--publishing-interval", type=float, default=0.2, help="seconds (default 0.2)")
    args = p.parse_args(argv)
    items = args.items or (2000 if args.quick else 10_000)
    servers = args.servers or (2 if args.quick else 4)
    seconds = args.seconds or (20.0 if args.quick else 120.0)
    per_server = items // servers
    spawn = mp.get_context("spawn")
    procs: list[tuple[Any, Connection]] = []
    endpoints: list[str] = []
    try:
        for _ in range(servers):
            parent, child = spawn.Pipe()
            proc = spawn.Process(target=_server_main, args=(per_server, child), daemon=True)
            proc.start()
            procs.append((proc, parent))
        for _proc, parent in procs:
            if not parent.poll(300):
                raise SystemExit("a simulator server did not start within 300 s")
            endpoints.append(parent.recv())
        print(f"{servers} simulator servers with {per_server} variables each: {', '.join(endpoints)}", flush=True)
        r = asyncio.run(_measure(endpoints, per_server, seconds, args.publishing_interval))
    finally:
        for proc, parent in procs:
            with contextlib.suppress(BrokenPipeError, OSError):
                parent.send("stop")
            proc.join(20)
            if proc.is_alive():
                proc.terminate()
    total = per_server * servers
    print(f"measured {r['seconds']:.0f} s: {r['notifications_per_s']:.0f} notifications/s "
          f"(expected {total:.0f}/s at 1 s sampling), lag p50 {r['p50_lag_ms']:.0f} ms p99 {r['p99_lag_ms']:.0f} ms, "
          f"gateway CPU {r['cpu_pct']:.0f} % of one core, RSS {r['rss_start_mb']:.0f} -> {r['rss_mb']:.0f} MB, "
          f"bad input {r['bad']:.0f}")
    print(f"opcua: items={total} notifications_per_s={r['notifications_per_s']:.0f} "
          f"p99_lag_ms={r['p99_lag_ms']:.0f} cpu_pct={r['cpu_pct']:.0f} rss_mb={r['rss_mb']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
