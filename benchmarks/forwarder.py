"""The yardstick: a bare MQTT -> InfluxDB forwarder as people write it (paho + json + batched HTTP writes).

No durability: paho acknowledges each message as it arrives, before anything is safe, and a failed write is lost.
    python -m benchmarks.forwarder --port 1883 --topic 'bench/fwd/+/report' --influx http://127.0.0.1:8086 --db fwd
"""

import argparse
import json
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--topic", required=True)
p.add_argument("--influx", required=True)
p.add_argument("--db", required=True)
a = p.parse_args()
lines: list[str] = []
lock = threading.Lock()


def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
    d = json.loads(msg.payload)
    line = (f'printer,machine={d["machine"]},site=fwd nozzle_temp={d["nozzle_temp"]},bed_temp={d["bed_temp"]},'
            f'layer={d["layer"]}i,state="{d["state"]}" {d["ts"]}')
    with lock:
        lines.append(line)


def flush_forever() -> None:
    url = f"{a.influx}/write?db={a.db}&precision=ms"
    while True:
        time.sleep(0.1)
        with lock:
            batch = lines[:]
            lines.clear()
        for i in range(0, len(batch), 5000):
            urllib.request.urlopen(url, "\n".join(batch[i:i + 5000]).encode(), timeout=10).read()


client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-forwarder")
client.on_message = on_message
client.on_connect = lambda c, *_: c.subscribe(a.topic, qos=1)
client.connect("127.0.0.1", a.port)
threading.Thread(target=flush_forever, daemon=True).start()
client.loop_forever()
