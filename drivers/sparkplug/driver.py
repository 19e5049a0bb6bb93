"""Sparkplug B driver: the gateway as a Sparkplug Host Application on one broker, serving every machine there.

On every connection (a clean session, as Sparkplug 3.0 requires of host applications) it registers the will
`spBv1.0/STATE/<host_id>` = `{"online": false, "timestamp": T}` (QoS 1, retained), subscribes to its own STATE topic
and to `spBv1.0/<group>/#` of every configured group, and once the broker has acknowledged the subscriptions
publishes `{"online": true, "timestamp": T}` there, retained. What each message means is decided by the pure
`HostSession` (session.py); this module does the I/O: the connection (`BrokerLink`, paho's loop on our thread),
readings handed to the pipeline with `emit_blocking`, QoS 1 messages acknowledged after the commit (as the MQTT
driver does), rebirth requests published as NCMD, and machines marked online/offline on births and deaths.
When the gateway stops it publishes STATE offline before disconnecting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.client import BrokerLink, connect_args, new_client
from drivers.mqtt.config import MqttBroker
from drivers.sparkplug.config import SparkplugMachine
from drivers.sparkplug.payload import node_topic, rebirth_request, state_topic
from drivers.sparkplug.session import HostSession, Outcome
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable

log = logging.getLogger(__name__)

TICK_S = 0.25  # how late a reorder timeout may be noticed


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """The host application's STATE message (Sparkplug 3.0): UTF-8 JSON with `online` and `timestamp`."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}, separators=(",", ":")).encode()


class SparkplugDriver:
    retry = Retry(immediate_first=True)

    def __init__(self, broker: MqttBroker, machines: Sequence[SparkplugMachine], site_id: str, host_id: str, *,
                 host: str | None = None, port: int | None = None) -> None:
        self.broker = broker
        self.name = f"sparkplug:{broker.id}"
        self.machine_ids = [m.id for m in machines]
        self.machines = list(machines)
        self.host = host or broker.host
        self.port = port if port is not None else broker.port
        self.host_id = host_id
        self.client_id = f"{broker.driver_client_id(site_id)}-sparkplug"
        self.state_topic = state_topic(host_id)

    async def run(self, ctx: DriverContext) -> None:
        loop = asyncio.get_running_loop()
        session = HostSession(self.machines, self.host_id, ctx.bad_input, clock=time.monotonic)
        subscriptions = [self.state_topic] + [f"spBv1.0/{g}/#" for g in session.groups()]
        stamp_ms = time.time_ns() // 1_000_000  # the STATE timestamp of this connection: will and birth alike
        client = new_client(self.broker, self.client_id, session="clean", manual_ack=True)
        client.will_set(self.state_topic, state_payload(False, stamp_ms), qos=1, retain=True)
        pending_subs: set[int] = set()
        online = threading.Event()  # STATE online published on this connection

        def publish_state() -> None:
            client.publish(self.state_topic, state_payload(True, stamp_ms), qos=1, retain=True)
            online.set()

        def on_accept(c: mqtt.Client, _flags: mqtt.ConnectFlags) -> None:
            session.reset()
            for topic in subscriptions:
                _rc, mid = c.subscribe(topic, qos=1)
                if mid is not None:
                    pending_subs.add(mid)

        def on_subscribe(_c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
            pending_subs.discard(mid)
            refused = [str(code) for code in codes if code.is_failure]
            if refused:
                ctx.fault_threadsafe(DriverUnavailable(f"broker {self.host}:{self.port} refused a subscription of "
                                                       f"{self.name}: {', '.join(refused)}"))
                return
            if not pending_subs and not online.is_set():
                publish_state()  # Sparkplug 3.0: the STATE birth follows the acknowledged subscriptions

        def act(out: Outcome, ack: Callable[[], None] | None) -> None:
            """What a message or the passing of time led to (on the network thread, which owns `session`)."""
            for group, edge_node in out.rebirths:
                log.info("%s: asking Sparkplug edge node %s/%s for a rebirth", self.name, group, edge_node)
                client.publish(node_topic("NCMD", group, edge_node), rebirth_request(time.time_ns() // 1_000_000),
                               qos=0)
            if out.republish_state and online.is_set():
                publish_state()
            if out.online or out.offline:
                loop.call_soon_threadsafe(_connection_state, ctx, out)
            ctx.emit_blocking(out.readings, ack)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                out = session.handle(msg.topic, msg.payload, time.time_ns())
            except Exception as err:  # whatever one message does, it is bad input: counted, acknowledged, dropped
                ctx.bad_input("undecodable", None, f"{msg.topic!r}: {type(err).__name__}: {str(err)[:120]}")
                out = Outcome()
            # a message held for the reorder timeout is acknowledged now (Sparkplug data is QoS 0; only a QoS 1
            # one held would be lost if the gateway died within the timeout)
            act(out, link.acker(msg))

        def tick() -> None:
            act(session.tick(), None)

        def farewell() -> None:
            # an intentional disconnect publishes STATE offline first (the broker drops the will on DISCONNECT)
            client.publish(self.state_topic, state_payload(False, time.time_ns() // 1_000_000), qos=1, retain=True)

        link = BrokerLink(ctx, client, self.name, f"broker {self.host}:{self.port}", on_accept=on_accept)
        # an exception in a callback would end paho's network loop silently: it restarts the driver instead
        client.on_subscribe = ctx.guard(on_subscribe)
        client.on_message = ctx.guard(on_message)
        async with link.open(self.host, self.port, farewell=farewell, **connect_args(self.broker, "clean")):
            ctx.connected([])  # the broker is reached; each machine comes online with its birth certificate
            guarded_tick = ctx.guard(tick)
            while True:  # reorder timeouts and delayed rebirth requests are checked on the network thread
                await link.until_lost(TICK_S)
                link.network.call(guarded_tick)


def _connection_state(ctx: DriverContext, out: Outcome) -> None:
    if out.offline:
        ctx.disconnected(out.offline_reason, out.offline, retrying=False)
    if out.online:
        ctx.connected(out.online)
