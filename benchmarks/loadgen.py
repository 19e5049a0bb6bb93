"""One load-generator process: simulated 3D printers publishing JSON reports at QoS 1, paced, bounded in time and count.

A raw MQTT 3.1.1 client (CONNECT, PUBLISH QoS 1, PUBACK, DISCONNECT) over a plain socket, standard library only, so
the generator costs as little CPU as possible and several of them can run side by side. It publishes for the
machines `prefix<start>`, `prefix<start+step>`, ... round-robin at `--rate` messages per second (0: as fast as the
broker acknowledges), keeps at most `--window` messages unacknowledged, and prints one JSON object: what it sent,
what the broker acknowledged, and per machine (count, sum of `layer`, first ts, last ts) for exact reconciliation.

Every message: {"ts": <ms, unique per machine>, "machine": id, "nozzle_temp": x, "bed_temp": y, "layer": seq,
"state": "printing"}. `layer` counts up per machine from `--seq-start`, so count and sum of `layer` per machine
identify the exact set that was published.

    python -m benchmarks.loadgen --port 1883 --topic bench/gw --machines 200 --rate 5000 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time

LOOPBACK = "127.0.0.1"
PUBACK = 0x40


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _string(client_id.encode())
    return bytes([0x10]) + _varint(len(body)) + body


def machine_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(count)]


def run(*, port: int, topic: str, machines: list[str], rate: float, seconds: float, count: int, window: int,
        seq_start: int, start_at: float, client_id: str) -> dict[str, object]:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id))
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise SystemExit(f"broker refused the connection: {connack!r}")
    sock.settimeout(None)
    heads = [(_string(f"{topic}/{m}/report".encode()), m.encode()) for m in machines]
    stats = [[0, 0, 0, 0] for _ in machines]  # count, sum(layer), first ts, last ts
    n_machines = len(machines)
    while (wait := start_at - time.time()) > 0:
        time.sleep(min(wait, 0.05))
    t0 = time.monotonic()
    sent = acked = 0
    pid = 0
    mi = 0
    pending = b""
    bad_acks = 0
    stop_publish = t0 + seconds
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))  # stop publishing, collect acks, report
    while True:
        now = time.monotonic()
        if stopped and stop_publish > now:
            stop_publish = now
        publishing = now < stop_publish and sent < count
        if not publishing and acked >= sent:
            break
        if publishing:
            due = count if rate <= 0 else min(count, int(rate * (now - t0)) + 1)
            n = min(due - sent, window - (sent - acked), 2000)
            if n > 0:
                ts_now = time.time_ns() // 1_000_000
                out = []
                for _ in range(n):
                    head, mid = heads[mi]
                    st = stats[mi]
                    layer = seq_start + st[0]
                    ts = ts_now if ts_now > st[3] else st[3] + 1
                    payload = b'{"ts":%d,"machine":"%s","nozzle_temp":%.1f,"bed_temp":%.1f,"layer":%d,' \
                              b'"state":"printing"}' % (ts, mid, 200.0 + layer % 50, 60.0 + layer % 7, layer)
                    pid = pid % 65535 + 1
                    rest = head + pid.to_bytes(2, "big") + payload
                    out.append(b"\x32" + _varint(len(rest)) + rest)
                    if not st[0]:
                        st[2] = ts
                    st[0] += 1
                    st[1] += layer
                    st[3] = ts
                    mi = mi + 1 if mi + 1 < n_machines else 0
                sock.sendall(b"".join(out))
                sent += n
        elif now > stop_publish + 60:
            break  # the broker did not acknowledge everything within a minute: reported as unacked
        timeout = 0.0 if publishing and rate <= 0 else 0.002
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            data = pending + sock.recv(1 << 20)
            if not data:
                raise SystemExit("broker closed the connection")
            whole = len(data) // 4 * 4
            bad_acks += whole // 4 - data[0:whole:4].count(PUBACK)
            acked += whole // 4
            pending = data[whole:]
    elapsed = time.monotonic() - t0
    sock.sendall(b"\xe0\x00")
    sock.close()
    return {
        "sent": sent, "acked": acked, "bad_acks": bad_acks, "elapsed_s": elapsed,
        "machines": {m: st for m, st in zip(machines, stats, strict=True) if st[0]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="broker port on 127.0.0.1")
    p.add_argument("--topic", default="bench/gw", help="topic prefix; messages go to <prefix>/<machine>/report")
    p.add_argument("--prefix", default="p-", help="machine id prefix")
    p.add_argument("--machines", type=int, default=200, help="number of simulated printers in total")
    p.add_argument("--shard", default="0/1", help="i/n: this process publishes for machines i, i+n, i+2n, ...")
    p.add_argument("--rate", type=float, default=0, help="messages per second of this process (0: as fast as acked)")
    p.add_argument("--seconds", type=float, default=15.0, help="stop publishing after this many seconds")
    p.add_argument("--count", type=int, default=10**9, help="stop publishing after this many messages")
    p.add_argument("--window", type=int, default=20000, help="most unacknowledged messages")
    p.add_argument("--seq-start", type=int, default=0, help="first `layer` value of every machine")
    p.add_argument("--start-at", type=float, default=0.0, help="Unix time to start publishing at (sync processes)")
    a = p.parse_args(argv)
    shard, shards = (int(x) for x in a.shard.split("/"))
    machines = machine_ids(a.prefix, a.machines)[shard::shards]
    result = run(port=a.port, topic=a.topic, machines=machines, rate=a.rate, seconds=a.seconds, count=a.count,
                 window=min(a.window, 60000), seq_start=a.seq_start, start_at=a.start_at,
                 client_id=f"loadgen-{shard}-{time.time_ns() % 10**9}")
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
