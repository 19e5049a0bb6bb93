"""MQTT driver: one paho-mqtt client per broker, serving every machine that publishes there.

The connection is the shared `BrokerLink` (client.py): paho's network loop runs on a thread of ours
(`NetworkThread`, paho's public external-loop API). Messages are decoded on that thread and handed to the pipeline
with `emit_blocking`, which blocks when the gateway is full, so TCP and the broker hold the rest. QoS 1 messages are
acknowledged (paho manual ack) only after the pipeline has committed their readings to the outbox: the ack callback
hands the PUBACK to the network thread. Reconnects are driven by the gateway's supervisor (capped, jittered
backoff), which re-subscribes on every connect.

Throughput (see README.md, "Throughput"): paho reads each packet with about three `recv` calls after one `select`,
and writes each PUBACK with its own `send`. Only the hand-over of PUBACKs is batched (client.py, one wake-up of the
network thread per burst released by an outbox commit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

from drivers.mqtt.client import BrokerLink, connect_args, new_client
from drivers.mqtt.config import MqttBroker, MqttMachine
from drivers.mqtt.mapping import Decoder, Router
from gateway.driver import DriverContext, Retry

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 65535  # MQTT 5: how many unacknowledged QoS 1 messages the broker may send us


class MqttDriver:
    retry = Retry()

    def __init__(self, broker: MqttBroker, machines: Sequence[MqttMachine], site_id: str, *,
                 host: str | None = None, port: int | None = None) -> None:
        self.broker = broker
        self.name = f"mqtt:{broker.id}"
        self.machine_ids = [m.id for m in machines]
        self.host = host or broker.host
        self.port = port if port is not None else broker.port
        self.router = Router(machines, site_id)
        self.subscriptions = list(broker.subscriptions or self.router.filters())
        self.client_id = broker.driver_client_id(site_id)
        self._client: mqtt.Client | None = None

    async def run(self, ctx: DriverContext) -> None:
        if self._client is None:  # kept across reconnects, like the session it belongs to
            self._client = new_client(self.broker, self.client_id, session=self.broker.session, manual_ack=True)
        client = self._client
        decoder = Decoder(self.router, self.broker.max_payload_bytes, ctx.bad_input)

        def on_accept(c: mqtt.Client, flags: mqtt.ConnectFlags) -> None:
            for topic in self.subscriptions:
                c.subscribe(topic, qos=1)
            log.debug("%s connected (session present: %s)", self.name, flags.session_present)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                readings = decoder.decode(msg.topic, msg.payload, time.time_ns())
            except Exception as err:  # whatever one message does (RecursionError from nested JSON, say), it is
                # bad input: counted, acknowledged below and dropped, never redelivered forever
                routes = self.router.routes(msg.topic)
                ctx.bad_input("undecodable", routes[0][0].machine if routes else None,
                              f"{msg.topic!r}: {type(err).__name__}: {str(err)[:120]}")
                readings = []
            ctx.emit_blocking(readings, link.acker(msg))

        link = BrokerLink(ctx, client, self.name, f"broker {self.host}:{self.port}", on_accept=on_accept)
        client.on_message = ctx.guard(on_message)
        async with link.open(self.host, self.port,
                             **connect_args(self.broker, self.broker.session, receive_maximum=RECEIVE_MAXIMUM)):
            ctx.connected()
            await link.until_lost()
