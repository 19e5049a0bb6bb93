"""Outage benchmark: steady load, InfluxDB stopped for a while, the gateway killed with SIGKILL once meanwhile.

    python -m benchmarks.outage [--quick] [--rate 1000] [--outage-s 600]

Timeline: steady load from 200 printers (--rate msg/s) through Mosquitto to the gateway (`kartech run`) and
InfluxDB 1.x; after 10 s InfluxDB is stopped for --outage-s (default 10 min, --quick 60 s); halfway through the
outage the gateway is killed with SIGKILL and restarted 3 s later; then InfluxDB comes back while the load goes
on. Catch-up is measured from the first write after InfluxDB returned until the gateway's queue is back to at
most one second of live data: catchup_x = messages written per second during catch-up / the live rate. (The
sink's retry backoff, capped at 30 s, decides when that first write happens; it is reported separately.) Once
caught up the load stops, and the exact set of published messages is compared with InfluxDB: per printer the
count and the sum of `layer`. Last line:
    outage: published=<n> stored=<n> lost=<n> duplicates=<n> catchup_x=<n>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.common import (
    SIGNALS_PER_MESSAGE,
    GatewayProcess,
    Load,
    gateway_yaml,
    loadavg,
    log,
    mosquitto,
    wait_stored,
    workdir,
)
from simulators.services import InfluxDB1

PRE_S = 10.0
KILLED_S = 3.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a 60 s outage (CI)")
    p.add_argument("--rate", type=int, default=1000, help="steady load in messages per second")
    p.add_argument("--outage-s", type=float, default=None, help="how long InfluxDB is down (default 600, quick 60)")
    p.add_argument("--publishers", type=int, default=1, help="load-generator processes")
    a = p.parse_args(argv)
    outage_s = a.outage_s or (60.0 if a.quick else 600.0)
    started = time.monotonic()
    log(f"outage benchmark: {a.rate} msg/s, InfluxDB down {outage_s:g} s, one SIGKILL of the gateway meanwhile; "
        f"load average {loadavg()}")
    broker, influx = mosquitto(), InfluxDB1()
    broker.start()
    influx.start()
    try:
        with workdir("kartech-outage-") as tmp:
            return _run(a, outage_s, broker.port, influx, tmp, started)
    finally:
        broker.close()
        influx.close()


def _run(a: argparse.Namespace, outage_s: float, port: int, influx: InfluxDB1, tmp: Path, started: float) -> int:
    gw = GatewayProcess(tmp, lambda api: gateway_yaml(site="gw", broker_port=port, influx_url=influx.url,
                                                      database="outage", data_dir=tmp / "data", api_port=api))
    gw.start()
    catchup_cap_s = outage_s + 60.0  # catch-up must be faster than 1x; the load stops at the latest then
    load = Load(port, topic="bench/gw", rate=a.rate, seconds=PRE_S + outage_s + catchup_cap_s,
                publishers=a.publishers)
    try:
        t0 = time.monotonic()
        time.sleep(PRE_S)
        influx.stop()
        log(f"InfluxDB stopped; gateway queue: {gw.health()['sinks']}")
        time.sleep(outage_s / 2)
        queued = gw.metrics().total("sink_queue_readings", sink="influxdb")
        gw.kill9()
        log(f"gateway killed with SIGKILL ({queued:,.0f} readings queued in its outbox); restarting in {KILLED_S:g} s")
        time.sleep(KILLED_S)
        gw.start()
        time.sleep(max(0.0, t0 + PRE_S + outage_s - time.monotonic()))
        influx.start()
        t_up = time.monotonic()
        m = gw.metrics()
        backlog = m.total("sink_queue_readings", sink="influxdb")
        w_up = m.total("readings_written_total")
        log(f"InfluxDB back after {t_up - t0 - PRE_S:.0f} s; {backlog / SIGNALS_PER_MESSAGE:,.0f} messages queued")
        t_first = t_caught = None
        w_first = 0.0
        live_second = a.rate * SIGNALS_PER_MESSAGE
        while time.monotonic() - t_up < catchup_cap_s:
            m = gw.metrics()
            w = m.total("readings_written_total")
            if t_first is None and w > w_up:
                t_first, w_first = time.monotonic(), w_up
            if t_first is not None and m.total("sink_queue_readings", sink="influxdb") <= live_second:
                t_caught = time.monotonic()
                w_caught = w
                break
            time.sleep(0.2)
        load.stop()
        sent = load.wait()
    finally:
        load.kill()
    try:
        result, waited = wait_stored(influx, "outage", sent, 60)
    finally:
        gw.stop()
    if t_first is not None and t_caught is not None and t_caught > t_first:
        catchup_rate = (w_caught - w_first) / SIGNALS_PER_MESSAGE / (t_caught - t_first)
        catchup_x = catchup_rate / a.rate
        log(f"first write {t_first - t_up:.1f} s after InfluxDB returned (sink retry backoff); caught up "
            f"{t_caught - t_first:.1f} s later at {catchup_rate:,.0f} msg/s = {catchup_x:.1f}x the live rate")
    else:
        catchup_x = 0.0
        log(f"did not catch up within {catchup_cap_s:g} s")
    log(f"load: {sent.acked:,} of {sent.sent:,} acknowledged by the broker at {sent.rate:,.0f} msg/s; "
        f"everything stored {waited:.1f} s after the load stopped")
    if result.mismatched_series:
        log(f"series whose count or checksum differ: {result.mismatched_series[:10]}")
    log(f"duration {time.monotonic() - started:.0f} s, load average now {loadavg()}")
    print(f"outage: published={result.published} stored={result.stored} lost={result.lost} "
          f"duplicates={result.duplicates} catchup_x={catchup_x:.1f}", flush=True)
    return 0 if result.lost == 0 and result.duplicates == 0 and not result.mismatched_series else 1


if __name__ == "__main__":
    sys.exit(main())
