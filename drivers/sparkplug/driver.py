"""Sparkplug B driver: the gateway as a Sparkplug Host Application on one broker, serving every machine there.

On every connection (a clean session, as Sparkplug 3.0 requires of host applications) it registers the will
`spBv1.0/STATE/<host_id>` = `{"online": false, "timestamp": T}` (QoS 1, retained), subscribes to its own STATE topic
and to `spBv1.0/<group>/#` of every configured group, and once the broker has acknowledged the subscriptions
publishes `{"online": true, "timestamp": T}` there, retained. What each message means is decided by the pure
`HostSession` (session.py); this module does the I/O: paho's network loop on a thread of ours (`NetworkThread`),
readings handed to the pipeline with `emit_blocking`, QoS 1 messages acknowledged after the commit (as the MQTT
driver does), rebirth requests published as NCMD, and machines marked online/offline on births and deaths.
When the gateway stops it publishes STATE offline before disconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.client import NetworkThread, connect_args, new_client
from drivers.mqtt.config import MqttBroker
from drivers.sparkplug.config import SparkplugMachine
from drivers.sparkplug.payload import node_topic, rebirth_request, state_topic
from drivers.sparkplug.session import HostSession, Outcome
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0


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
        connected: asyncio.Future[None] = loop.create_future()
        lost = asyncio.Event()
        lost_reason: list[str] = []
        pending_subs: set[int] = set()
        online = threading.Event()  # STATE online published on this connection

        def publish_state() -> None:
            client.publish(self.state_topic, state_payload(True, stamp_ms), qos=1, retain=True)
            online.set()

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            if rc.is_failure:
                loop.call_soon_threadsafe(_settle, connected, f"broker refused the connection: {rc}")
                return
            session.reset()
            for topic in subscriptions:
                _rc, mid = c.subscribe(topic, qos=1)
                if mid is not None:
                    pending_subs.add(mid)
            loop.call_soon_threadsafe(_settle, connected, None)

        def on_subscribe(_c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
            pending_subs.discard(mid)
            refused = [str(code) for code in codes if code.is_failure]
            if refused:
                ctx.fault_threadsafe(DriverUnavailable(f"broker {self.host}:{self.port} refused a subscription of "
                                                       f"{self.name}: {', '.join(refused)}"))
                return
            if not pending_subs and not online.is_set():
                publish_state()  # Sparkplug 3.0: the STATE birth follows the acknowledged subscriptions

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            lost_reason.append(str(rc))
            loop.call_soon_threadsafe(lost.set)

        def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                out = session.handle(msg.topic, msg.payload, time.time_ns())
            except Exception as err:  # whatever one message does, it is bad input: counted, acknowledged, dropped
                ctx.bad_input("undecodable", None, f"{msg.topic!r}: {type(err).__name__}: {str(err)[:120]}")
                out = Outcome()
            for group, edge_node in out.rebirths:
                log.info("%s: asking Sparkplug edge node %s/%s for a rebirth", self.name, group, edge_node)
                c.publish(node_topic("NCMD", group, edge_node), rebirth_request(time.time_ns() // 1_000_000), qos=0)
            if out.republish_state and online.is_set():
                publish_state()
            if out.online or out.offline:
                loop.call_soon_threadsafe(_connection_state, ctx, out)
            ctx.emit_blocking(out.readings, _Acker(network, msg.mid, msg.qos) if msg.qos else None)

        # an exception in a callback would end paho's network loop silently: it restarts the driver instead
        client.on_connect = ctx.guard(on_connect)
        client.on_subscribe = ctx.guard(on_subscribe)
        client.on_disconnect = ctx.guard(on_disconnect)
        client.on_message = ctx.guard(on_message)

        try:
            await asyncio.to_thread(client.connect, self.host, self.port, **connect_args(self.broker, "clean"))
        except (OSError, ssl.SSLError, ValueError) as err:
            raise DriverUnavailable(f"cannot connect to broker {self.host}:{self.port}: {err}") from err

        def ended() -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: the gateway has stopped
                loop.call_soon_threadsafe(lost.set)

        network = NetworkThread(client, f"paho {self.name}", on_fault=ctx.fault_threadsafe, on_exit=ended)
        network.start()
        try:
            try:
                await asyncio.wait_for(connected, CONNECT_TIMEOUT_S)
            except TimeoutError as err:
                raise DriverUnavailable(f"broker {self.host}:{self.port} did not answer CONNECT in "
                                        f"{CONNECT_TIMEOUT_S:.0f} s") from err
            ctx.connected([])  # the broker is reached; each machine comes online with its birth certificate
            await lost.wait()
            raise DriverUnavailable(f"lost connection to broker {self.host}:{self.port}: "
                                    f"{lost_reason[-1] if lost_reason else 'unknown reason'}")
        finally:
            # an intentional disconnect publishes STATE offline first (the broker drops the will on DISCONNECT)
            network.call(lambda: client.publish(self.state_topic, state_payload(False, time.time_ns() // 1_000_000),
                                                qos=1, retain=True))
            await asyncio.to_thread(network.stop, STOP_TIMEOUT_S)


def _connection_state(ctx: DriverContext, out: Outcome) -> None:
    if out.offline:
        ctx.disconnected(out.offline_reason, out.offline, retrying=False)
    if out.online:
        ctx.connected(out.online)


class _Acker:
    """Releases the acknowledgement of one QoS 1 or 2 message once the pipeline has its readings safe."""

    __slots__ = ("mid", "network", "qos")

    def __init__(self, network: NetworkThread, mid: int, qos: int) -> None:
        self.network = network
        self.mid = mid
        self.qos = qos

    def __call__(self) -> None:
        client = self.network.client
        self.network.call(lambda: client.ack(self.mid, self.qos))


def _settle(fut: asyncio.Future[None], error: str | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(DriverUnavailable(error))
