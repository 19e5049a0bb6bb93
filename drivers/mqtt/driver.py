"""MQTT driver: one paho-mqtt client per broker, serving every machine that publishes there.

paho's network loop runs on a thread of ours (`NetworkThread`, paho's public external-loop API). Messages are
decoded on that thread and handed to the pipeline with `emit_blocking`, which blocks when the gateway is full, so
TCP and the broker hold the rest. QoS 1 messages are acknowledged (paho manual ack) only after the pipeline has
committed their readings to the outbox: the ack callback hands the PUBACK to the network thread. Reconnects are
driven by the gateway's supervisor (capped, jittered backoff), which re-subscribes on every connect.

Throughput (see README.md, "Throughput"): paho reads each packet with about three `recv` calls after one `select`,
and writes each PUBACK with its own `send`. Only the hand-over of PUBACKs is batched here (one wake-up of the
network thread per burst released by an outbox commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.client import NetworkThread, connect_args, new_client
from drivers.mqtt.config import MqttBroker, MqttMachine
from drivers.mqtt.mapping import Decoder, Router
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
RECEIVE_MAXIMUM = 65535  # MQTT 5: how many unacknowledged QoS 1 messages the broker may send us


class _AckBatch:
    """Acknowledgements released by the pipeline, handed to the network thread together (one wake-up per burst),
    and sent there in the order the messages came (MQTT requires it)."""

    def __init__(self, network: NetworkThread) -> None:
        self.network = network
        self._acks: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def add(self, mid: int, qos: int) -> None:
        with self._lock:
            self._acks.append((mid, qos))
            first = len(self._acks) == 1
        if first:
            self.network.call(self.flush)

    def flush(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
        client = self.network.client
        for mid, qos in acks:
            client.ack(mid, qos)


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
        loop = asyncio.get_running_loop()
        if self._client is None:  # kept across reconnects, like the session it belongs to
            self._client = new_client(self.broker, self.client_id, session=self.broker.session, manual_ack=True)
        client = self._client
        decoder = Decoder(self.router, self.broker.max_payload_bytes, ctx.bad_input)
        connected: asyncio.Future[None] = loop.create_future()
        lost = asyncio.Event()
        lost_reason: list[str] = []

        def on_connect(c: mqtt.Client, _u: Any, flags: Any, rc: ReasonCode, _p: Any) -> None:
            if rc.is_failure:
                loop.call_soon_threadsafe(_settle, connected, f"broker refused the connection: {rc}")
                return
            for topic in self.subscriptions:
                c.subscribe(topic, qos=1)
            log.debug("%s connected (session present: %s)", self.name, flags.session_present)
            loop.call_soon_threadsafe(_settle, connected, None)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            lost_reason.append(str(rc))
            loop.call_soon_threadsafe(lost.set)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                readings = decoder.decode(msg.topic, msg.payload, time.time_ns())
            except Exception as err:  # whatever one message does (RecursionError from nested JSON, say), it is
                # bad input: counted, acknowledged below and dropped, never redelivered forever
                routes = self.router.routes(msg.topic)
                ctx.bad_input("undecodable", routes[0][0].machine if routes else None,
                              f"{msg.topic!r}: {type(err).__name__}: {str(err)[:120]}")
                readings = []
            ctx.emit_blocking(readings, _Acker(acks, msg.mid, msg.qos) if msg.qos else None)

        # an exception in a callback would end paho's network loop silently: it restarts the driver instead
        client.on_connect = ctx.guard(on_connect)
        client.on_disconnect = ctx.guard(on_disconnect)
        client.on_message = ctx.guard(on_message)

        try:
            await asyncio.to_thread(
                client.connect, self.host, self.port,
                **connect_args(self.broker, self.broker.session, receive_maximum=RECEIVE_MAXIMUM),
            )
        except (OSError, ssl.SSLError, ValueError) as err:
            raise DriverUnavailable(f"cannot connect to broker {self.host}:{self.port}: {err}") from err

        def ended() -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: the gateway has stopped
                loop.call_soon_threadsafe(lost.set)

        network = NetworkThread(client, f"paho {self.name}", on_fault=ctx.fault_threadsafe, on_exit=ended)
        acks = _AckBatch(network)
        network.start()
        try:
            try:
                await asyncio.wait_for(connected, CONNECT_TIMEOUT_S)
            except TimeoutError as err:
                raise DriverUnavailable(f"broker {self.host}:{self.port} did not answer CONNECT in "
                                        f"{CONNECT_TIMEOUT_S:.0f} s") from err
            ctx.connected()
            await lost.wait()
            raise DriverUnavailable(f"lost connection to broker {self.host}:{self.port}: "
                                    f"{lost_reason[-1] if lost_reason else 'unknown reason'}")
        finally:
            await asyncio.to_thread(network.stop, STOP_TIMEOUT_S)


class _Acker:
    """Releases the acknowledgement of one QoS 1 or 2 message once the pipeline has its readings safe."""

    __slots__ = ("batch", "mid", "qos")

    def __init__(self, batch: _AckBatch, mid: int, qos: int) -> None:
        self.batch = batch
        self.mid = mid
        self.qos = qos

    def __call__(self) -> None:
        self.batch.add(self.mid, self.qos)


def _settle(fut: asyncio.Future[None], error: str | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(DriverUnavailable(error))
