"""Ingest benchmark: 200 simulated printers -> Mosquitto (QoS 1) -> the gateway (`kartech run`) -> InfluxDB 1.x.

    python -m benchmarks.ingest [--quick] [--publishers 2] [--steps 5000,10000,...] [--backlog 200000 (quick 50000)]

It starts its own Mosquitto and InfluxDB on free loopback ports and, in one run:
1. the raw ceilings: bare line-protocol writes to the InfluxDB, and the bare forwarder (benchmarks/forwarder.py:
   paho + json + batched HTTP, acknowledging before anything is safe) at 5,000 msg/s (and higher steps unless
   --quick) for CPU, RSS and publish-to-queryable latency;
2. the gateway as its own process, at stepped offered rates, each held for 60 s (--quick: 15 s). A step is
   sustained when the generator reached 95 % of the offered rate, everything published is in InfluxDB (exact
   per-machine count and sum of `layer`) and it got there within 2 s (or 5 % of the step) after publishing
   ended. The steps stop at the first one not sustained. CPU % (of one core) and peak RSS come from /proc;
   latency from polling InfluxDB for one printer's points, whose `ts` is the publish time;
3. overload: the gateway offered twice the first rate it did not sustain (twice the top step when it sustained
   them all) for one step (--quick: half a step): the rate it stored while overloaded (it must stay at capacity:
   no stall), the most machines it showed `offline` meanwhile (a state view that falls behind shows a
   stale-machine storm), and afterwards the exact reconciliation (nothing the broker delivered is lost);
4. the backlog variant: the gateway and a bare paho subscriber (the raw MQTT ceiling) are both offline with
   persistent sessions while --backlog messages are published (the generator's own ceiling), then each drains
   the broker on its own.
The last line is the summary CI parses:
    ingest: sustained_msgs=<n> drain_msgs=<n> ratio_subscriber=<x> cpu_pct_at_5k=<n> cpu_ratio_forwarder=<x>
            rss_mb_at_5k=<n> p99_ms_at_5k=<n> lost=<n> p99_ms_at_10k=<n> overload_msgs=<n>
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.common import (
    SIGNALS_PER_MESSAGE,
    TOKEN,
    GatewayProcess,
    LatencyProbe,
    Load,
    ProcSampler,
    gateway_yaml,
    influx_write_ceiling,
    loadavg,
    log,
    mosquitto,
    publish,
    wait_stored,
    workdir,
)
from simulators.services import InfluxDB1

REPO = Path(__file__).resolve().parents[1]
FIVE_K = 5000


@dataclass
class Step:
    offered: int
    achieved: float
    published: int
    lost: int
    duplicates: int
    lag_s: float
    cpu_pct: float
    rss_mb: float
    p50_ms: float
    p99_ms: float
    sustained: bool

    def line(self, who: str) -> str:
        verdict = "sustained" if self.sustained else "NOT sustained"
        return (f"{who} offered {self.offered:>6}/s achieved {self.achieved:8.0f}/s  lost {self.lost} dup "
                f"{self.duplicates}  lag {self.lag_s:4.1f} s  cpu {self.cpu_pct:5.1f} %  rss {self.rss_mb:5.1f} MB  "
                f"p50 {self.p50_ms:5.0f} ms  p99 {self.p99_ms:5.0f} ms  -> {verdict}")


def run_step(influx: InfluxDB1, db: str, broker_port: int, topic: str, pid: int, rate: int, seconds: float,
             publishers: int) -> Step:
    with ProcSampler(pid) as ps, LatencyProbe(influx, db, "p-000") as lp:
        sent = Load(broker_port, topic=topic, rate=rate, seconds=seconds, publishers=publishers).wait()
    rec, lag = wait_stored(influx, db, sent, timeout_s=max(30.0, seconds))
    ok_rate = sent.rate >= 0.95 * rate
    sustained = ok_rate and rec.lost == 0 and not rec.mismatched_series and lag <= max(2.0, 0.05 * seconds)
    return Step(rate, sent.rate, rec.published, rec.lost + len(rec.mismatched_series) * (rec.lost == 0),
                rec.duplicates, lag, ps.cpu_pct, ps.peak_rss_mb, lp.percentile(50), lp.percentile(99), sustained)


def step_through(who: str, steps: list[int], run: object) -> list[Step]:
    out: list[Step] = []
    for rate in steps:
        s = run(rate)  # type: ignore[operator]
        log(s.line(who))
        out.append(s)
        if not s.sustained:
            break
    return out


@dataclass
class Overload:
    offered: int
    achieved: float
    stored_rate: float  # messages per second written to InfluxDB while the load lasted
    max_offline: int  # most machines shown offline at once while overloaded
    lost: int
    lag_s: float

    def line(self) -> str:
        return (f"overload offered {self.offered:>6}/s achieved {self.achieved:8.0f}/s  stored {self.stored_rate:8.0f}"
                f" msg/s while overloaded  offline at most {self.max_offline}  lost {self.lost}  "
                f"all stored {self.lag_s:.1f} s after publishing ended")


def run_overload(gw: GatewayProcess, influx: InfluxDB1, port: int, rate: int, seconds: float,
                 publishers: int) -> Overload:
    offline: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the machines the gateway shows offline, every 2 s (its API may answer slowly meanwhile)
        while not stop.wait(2.0):
            try:
                r = httpx.get(f"{gw.url}/api/v1/machines", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
                offline.append(sum(1 for m in r.json() if m["state"] == "offline"))
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                continue

    w0 = gw.metrics().total("readings_written_total")
    t0 = time.monotonic()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        sent = Load(port, topic="bench/gw", rate=rate, seconds=seconds, publishers=publishers,
                    seq_start=10**8).wait()
        elapsed = time.monotonic() - t0
        w1 = gw.metrics().total("readings_written_total")
    finally:
        stop.set()
        watcher.join(10)
    rec, lag = wait_stored(influx, "gw", sent, timeout_s=max(120.0, 4 * seconds))
    return Overload(rate, sent.rate, (w1 - w0) / SIGNALS_PER_MESSAGE / elapsed, max(offline, default=-1),
                    rec.lost + len(rec.mismatched_series) * (rec.lost == 0), lag)


def subscriber(port: int, topic: str, client_id: str, *extra: str) -> dict[str, float]:
    argv = [sys.executable, "-m", "benchmarks.subscriber", "--port", str(port), "--topic", topic,
            "--client-id", client_id, *extra]
    out = subprocess.run(argv, capture_output=True, timeout=600, cwd=REPO, check=True).stdout
    return dict(json.loads(out)) if out.strip() else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="15 s steps, fewer of them (CI)")
    p.add_argument("--publishers", type=int, default=2, help="load-generator processes")
    p.add_argument("--steps", default="", help="offered rates, comma-separated (msg/s)")
    p.add_argument("--backlog", type=int, default=None,
                   help="messages queued while the gateway is down (default 200,000; --quick 50,000)")
    a = p.parse_args(argv)
    a.backlog = a.backlog or (50_000 if a.quick else 200_000)
    seconds = 15.0 if a.quick else 60.0
    if a.steps:
        steps = [int(x) for x in a.steps.split(",")]
    else:
        steps = [5000, 10000, 15000] if a.quick else [2500, 5000, 7500, 10000, 12500, 15000, 17500, 20000]
    started = time.monotonic()
    log(f"ingest benchmark ({'quick' if a.quick else 'full'}): steps {steps} x {seconds:g} s, "
        f"{a.publishers} publisher processes, backlog {a.backlog}; load average {loadavg()}")
    broker, influx = mosquitto(), InfluxDB1()
    broker.start()
    influx.start()
    try:
        with workdir("kartech-bench-") as tmp:
            return _run(a, steps, seconds, broker.port, influx, tmp, started)
    finally:
        broker.close()
        influx.close()


def _run(a: argparse.Namespace, steps: list[int], seconds: float, port: int, influx: InfluxDB1, tmp: Path,
         started: float) -> int:
    # 1. raw ceilings
    influx_pps = influx_write_ceiling(influx, "ceiling", seconds=3 if a.quick else 10)
    log(f"bare line-protocol writes to InfluxDB: {influx_pps:,.0f} points/s")
    influx.create_database("fwd")
    fwd = subprocess.Popen([sys.executable, "-m", "benchmarks.forwarder", "--port", str(port), "--topic",
                            "bench/fwd/+/report", "--influx", influx.url, "--db", "fwd"], cwd=REPO)
    try:
        time.sleep(1.0)
        fwd_steps = step_through("forwarder", [FIVE_K] if a.quick else [s for s in steps if s >= FIVE_K],
                                 lambda r: run_step(influx, "fwd", port, "bench/fwd", fwd.pid, r, seconds,
                                                    a.publishers))
    finally:
        fwd.kill()
        fwd.wait()
    fwd5 = next((s for s in fwd_steps if s.offered == FIVE_K), None)

    # 2. the gateway, stepped
    gw = GatewayProcess(tmp, lambda api: gateway_yaml(site="gw", broker_port=port, influx_url=influx.url,
                                                      database="gw", data_dir=tmp / "data", api_port=api))
    gw.start()
    try:
        gw_steps = step_through("gateway  ", steps, lambda r: run_step(influx, "gw", port, "bench/gw", gw.pid, r,
                                                                      seconds, a.publishers))
        # 3. overload: twice what it could not sustain
        top = gw_steps[-1].offered if gw_steps else steps[0]
        # --quick: half a step (what matters is no stall and nothing lost; the backlog takes minutes to store)
        over = run_overload(gw, influx, port, 2 * top, seconds / 2 if a.quick else seconds, a.publishers)
        log(over.line())
        # 4. backlog: the gateway and a bare subscriber are away while the broker queues everything
        subscriber(port, "bench/gw/+/report", "bare-subscriber", "--subscribe-only")
        gw.stop()
        backlog = publish(port, topic="bench/gw", rate=0, seconds=300, count=a.backlog, publishers=a.publishers,
                          window=30_000)
        log(f"backlog: {backlog.acked:,} messages published in {backlog.elapsed_s:.1f} s "
            f"(the generator's ceiling: {backlog.rate:,.0f} msg/s)")
        sub = subscriber(port, "bench/gw/+/report", "bare-subscriber", "--expect", str(backlog.acked))
        log(f"bare paho subscriber drained {sub.get('received', 0):,.0f} in {sub.get('seconds', 0):.1f} s: "
            f"{sub.get('rate', 0):,.0f} msg/s")
        readings = backlog.acked * SIGNALS_PER_MESSAGE
        gw.start()
        t0, w0 = time.monotonic(), gw.metrics().total("readings_written_total")
        with ProcSampler(gw.pid) as drain_ps:
            deadline = t0 + 600
            while (w := gw.metrics().total("readings_written_total")) < readings and time.monotonic() < deadline:
                time.sleep(0.1)
        drain_s = time.monotonic() - t0
        drain = (w - w0) / SIGNALS_PER_MESSAGE / drain_s if drain_s > 0 else 0.0
        rec, _ = wait_stored(influx, "gw", backlog, 30)
        log(f"gateway drained the backlog at {drain:,.0f} msg/s (cpu {drain_ps.cpu_pct:.0f} %, peak rss "
            f"{drain_ps.peak_rss_mb:.0f} MB); {rec.line()}")
    finally:
        gw.stop()

    sustained = max((s.offered for s in gw_steps if s.sustained), default=0)
    gw5 = next((s for s in gw_steps if s.offered == FIVE_K), None)
    gw10 = next((s for s in gw_steps if s.offered == 10_000), None)
    lost = sum(s.lost for s in gw_steps) + over.lost + rec.lost + len(rec.mismatched_series) * (rec.lost == 0)
    sub_rate = sub.get("rate", 0.0)
    ratio_sub = drain / sub_rate if sub_rate else math.nan
    cpu5 = gw5.cpu_pct if gw5 else math.nan
    cpu_ratio = cpu5 / fwd5.cpu_pct if gw5 and fwd5 and fwd5.cpu_pct else math.nan
    fwd_sustained = max((s.offered for s in fwd_steps if s.sustained), default=0)
    generator = max([backlog.rate] + [s.achieved for s in gw_steps + fwd_steps])
    log("summary:")
    log(f"  gateway sustained {sustained:,} msg/s with zero loss (steps of {seconds:g} s); "
        f"bare forwarder sustained {fwd_sustained:,} msg/s (only steps >= 5k were tried)")
    log(f"  ratios: sustained/bare subscriber {sustained / sub_rate if sub_rate else math.nan:.2f}, "
        f"drain/bare subscriber {ratio_sub:.2f}, drain {drain:,.0f} msg/s")
    if gw5 and fwd5:
        log(f"  at 5k msg/s: gateway cpu {gw5.cpu_pct:.1f} % / rss {gw5.rss_mb:.0f} MB / p50 {gw5.p50_ms:.0f} ms / "
            f"p99 {gw5.p99_ms:.0f} ms; forwarder cpu {fwd5.cpu_pct:.1f} % / rss {fwd5.rss_mb:.0f} MB / "
            f"p99 {fwd5.p99_ms:.0f} ms")
    log(f"  at 10k msg/s: gateway p99 {gw10.p99_ms if gw10 else math.nan:.0f} ms; overloaded at {over.offered:,} "
        f"msg/s it stored {over.stored_rate:,.0f} msg/s, showed at most {over.max_offline} machines offline")
    log(f"  raw ceilings: InfluxDB {influx_pps:,.0f} points/s, bare subscriber {sub_rate:,.0f} msg/s, "
        f"load generator {generator:,.0f} msg/s ({a.publishers} processes)")
    log(f"  duration {time.monotonic() - started:.0f} s, load average now {loadavg()}")
    print(f"ingest: sustained_msgs={sustained} drain_msgs={drain:.0f} ratio_subscriber={ratio_sub:.2f} "
          f"cpu_pct_at_5k={cpu5:.1f} cpu_ratio_forwarder={cpu_ratio:.2f} "
          f"rss_mb_at_5k={gw5.rss_mb if gw5 else math.nan:.0f} p99_ms_at_5k={gw5.p99_ms if gw5 else math.nan:.0f} "
          f"lost={lost} p99_ms_at_10k={gw10.p99_ms if gw10 else math.nan:.0f} "
          f"overload_msgs={over.stored_rate:.0f}", flush=True)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
