"""MQTT driver: one paho-mqtt 2.x client per broker, serving every machine that publishes there.

paho runs its own network thread. Messages are decoded in that thread and handed to the pipeline with
`emit_blocking`, which blocks when the gateway is full, so TCP and the broker hold the rest. QoS 1 messages are
acknowledged (paho manual ack) only after the pipeline has stored their readings. Reconnects are driven by the
gateway's supervisor (capped, jittered backoff), which re-subscribes on every connect.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.config import MqttMachine
from drivers.mqtt.mapping import Decoder, Router
from gateway.config.models import MqttBroker
from gateway.errors import DriverUnavailable
from gateway.supervisor import DriverContext

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
RECEIVE_MAXIMUM = 65535  # MQTT 5: how many unacknowledged QoS 1 messages the broker may send us


class MqttDriver:
    def __init__(self, broker: MqttBroker, machines: Sequence[MqttMachine], site_id: str, *,
                 host: str | None = None, port: int | None = None) -> None:
        self.broker = broker
        self.name = f"mqtt:{broker.id}"
        self.machine_ids = [m.id for m in machines]
        self.host = host or broker.host
        self.port = port if port is not None else broker.port
        self.router = Router(machines, site_id)
        self.subscriptions = list(broker.subscriptions or self.router.filters())
        self.client_id = broker.client_id or f"kartech-{site_id}-{broker.id}"
        self._client: mqtt.Client | None = None

    def _make_client(self) -> mqtt.Client:
        b = self.broker
        v5 = b.protocol == "mqtt5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else (b.session == "clean"),
            manual_ack=True,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        if b.username:
            client.username_pw_set(b.username, b.password)
        if b.tls is not None:
            ctx = ssl.create_default_context(cafile=b.tls.ca_file)
            if b.tls.cert_file:
                ctx.load_cert_chain(b.tls.cert_file, b.tls.key_file)
            if b.tls.insecure_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            client.tls_set_context(ctx)
        return client

    async def run(self, ctx: DriverContext) -> None:
        loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        decoder = Decoder(self.router, self.broker.max_payload_bytes, ctx.bad_input)
        connected: asyncio.Future[None] = loop.create_future()
        lost = asyncio.Event()
        lost_reason: list[str] = []
        v5 = self.broker.protocol == "mqtt5"

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

        def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            readings = decoder.decode(msg.topic, msg.payload, time.time_ns())
            ack = _Acker(c, msg.mid, msg.qos) if msg.qos > 0 else None
            ctx.emit_blocking(readings, ack)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message

        props: Properties | None = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.broker.session_expiry_s if self.broker.session == "persistent" else 0
            props.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            await asyncio.to_thread(
                client.connect, self.host, self.port, self.broker.keepalive_s,
                clean_start=(self.broker.session == "clean") if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ssl.SSLError, ValueError) as err:
            raise DriverUnavailable(f"cannot connect to broker {self.host}:{self.port}: {err}") from err
        client.loop_start()
        try:
            try:
                await asyncio.wait_for(connected, CONNECT_TIMEOUT_S)
            except TimeoutError as err:
                raise DriverUnavailable(f"broker {self.host}:{self.port} did not answer CONNECT in "
                                        f"{CONNECT_TIMEOUT_S:.0f} s") from err
            if connected.result() is not None:  # pragma: no cover - settled with an error message instead
                raise DriverUnavailable(str(connected.result()))
            ctx.connected()
            await lost.wait()
            raise DriverUnavailable(f"lost connection to broker {self.host}:{self.port}: "
                                    f"{lost_reason[-1] if lost_reason else 'unknown reason'}")
        finally:
            await asyncio.to_thread(_stop, client)


class _Acker:
    """Sends the PUBACK for one message once the pipeline has its readings safe (paho's ack is thread-safe)."""

    __slots__ = ("client", "mid", "qos")

    def __init__(self, client: mqtt.Client, mid: int, qos: int) -> None:
        self.client = client
        self.mid = mid
        self.qos = qos

    def __call__(self) -> None:
        self.client.ack(self.mid, self.qos)


def _settle(fut: asyncio.Future[None], error: str | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(DriverUnavailable(error))


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()
