"""The raw ceiling on the MQTT side: a bare paho QoS 1 subscriber that only counts (acknowledging as paho does).

    python -m benchmarks.subscriber --port 1883 --topic 'bench/gw/+/report' --client-id bare --subscribe-only
    python -m benchmarks.subscriber --port 1883 --topic 'bench/gw/+/report' --client-id bare --expect 200000

With --subscribe-only it creates a persistent session and leaves, so the broker queues messages for it; with
--expect N it connects to that session, receives N messages and prints {"received", "seconds", "rate"} as JSON, the
time measured from the first message to the N-th.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--subscribe-only", action="store_true")
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args(argv)
    done = threading.Event()
    subscribed = threading.Event()
    times: list[float] = []
    count = [0]

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        count[0] += 1
        if count[0] == 1:
            times.append(time.monotonic())
        if count[0] >= a.expect:
            times.append(time.monotonic())
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.client_id, clean_session=False)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(a.topic, qos=1)
    client.connect("127.0.0.1", a.port)
    client.loop_start()
    if a.subscribe_only:
        ok = subscribed.wait(10)
        client.disconnect()
        client.loop_stop()
        return 0 if ok else 1
    finished = done.wait(a.timeout)
    client.disconnect()
    client.loop_stop()
    seconds = times[-1] - times[0] if len(times) == 2 else 0.0
    json.dump({"received": count[0], "seconds": seconds, "rate": count[0] / seconds if seconds else 0.0}, sys.stdout)
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
