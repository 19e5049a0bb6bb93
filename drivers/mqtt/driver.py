"""MQTT driver: one paho-mqtt 2.x client per broker, serving every machine that publishes there.

paho runs its own network thread. Messages are decoded in that thread and handed to the pipeline with
`emit_blocking`, which blocks when the gateway is full, so TCP and the broker hold the rest. QoS 1 messages are
acknowledged (paho manual ack) only after the pipeline has stored their readings. Reconnects are driven by the
gateway's supervisor (capped, jittered backoff), which re-subscribes on every connect.

Throughput: stock paho reads a packet with three or more `recv` calls and one `select` per packet, and writes each
PUBACK with its own `send`. `_Client` reads the socket in 64 KiB chunks and parses every whole packet it holds, and
`_AckBatch` sends all PUBACKs released by one outbox commit in a single write, in the order the messages came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
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
STOP_TIMEOUT_S = 2.0
RECEIVE_MAXIMUM = 65535  # MQTT 5: how many unacknowledged QoS 1 messages the broker may send us
READ_CHUNK = 65536
MAX_PACKETS_PER_READ = 2000  # then paho sends (acks, pings) before reading on
_PUBACK = struct.Struct("!BBH")


class _Client(mqtt.Client):
    """paho's client with buffered socket reads (paho's own private hooks; same packets, fewer system calls)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf, self._rpos = b"", 0  # nothing of an old connection may leak into the new one
        return super().reconnect()

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing is there, b"" when closed
            if not buf:
                return buf
            self._rbuf, pos = buf, 0
        end = min(len(buf), pos + bufsize)
        self._rpos = end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Parse every whole packet already received (paho parses one per `select`)."""
        for _ in range(MAX_PACKETS_PER_READ):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        if self._rpos >= len(self._rbuf):
            return super()._loop(timeout)
        # packets are buffered that `select` cannot see: handle them, send what is queued, do the housekeeping
        rc = self.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._out_packet:
            rc = self.loop_write()
        return rc or self.loop_misc()

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """Straight to `on_message`: we add no per-topic callbacks, so paho's topic matcher walk is skipped."""
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            on_message(self, self._userdata, message)

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK several QoS 1 messages with one write (MQTT requires them in the order received)."""
        packet = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
        self._packet_queue(mqtt.PUBACK, packet, mids[-1], 1)


class _AckBatch:
    """PUBACKs released by the pipeline, sent together once the event loop finishes the current commit."""

    def __init__(self, client: _Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self._mids: list[int] = []
        self._lock = threading.Lock()

    def add(self, mid: int) -> None:
        with self._lock:
            self._mids.append(mid)
            first = len(self._mids) == 1
        if first:
            self.loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        with self._lock:
            mids, self._mids = self._mids, []
        if mids:
            self.client.ack_many(mids)


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
        self.client_id = broker.driver_client_id(site_id)
        self._client: _Client | None = None

    def _make_client(self) -> _Client:
        b = self.broker
        v5 = b.protocol == "mqtt5"
        client = _Client(
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
        acks = _AckBatch(client, loop)
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
            try:
                readings = decoder.decode(msg.topic, msg.payload, time.time_ns())
            except Exception as err:  # whatever one message does (RecursionError from nested JSON, say), it is
                # bad input: counted, acknowledged below and dropped, never redelivered forever
                routes = self.router.routes(msg.topic)
                ctx.bad_input("undecodable", routes[0][0].machine if routes else None,
                              f"{msg.topic!r}: {type(err).__name__}: {str(err)[:120]}")
                readings = []
            ack = _Acker(acks, msg.mid) if msg.qos == 1 else _Qos2Acker(c, msg.mid) if msg.qos == 2 else None
            ctx.emit_blocking(readings, ack)

        # an exception in a callback would kill paho's network thread silently: it restarts the driver instead
        client.on_connect = ctx.guard(on_connect)
        client.on_disconnect = ctx.guard(on_disconnect)
        client.on_message = ctx.guard(on_message)

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
        def network() -> None:
            """paho's network loop in a thread of ours: if it dies, for any reason, the driver restarts."""
            try:
                client.loop_forever(retry_first_connection=True)
            except BaseException as err:
                ctx.fault_threadsafe(err)
            finally:
                with contextlib.suppress(RuntimeError):  # the event loop is closed: the gateway has stopped
                    loop.call_soon_threadsafe(lost.set)

        thread = threading.Thread(target=network, name=f"paho {self.name}", daemon=True)
        # paho in threaded mode (as loop_start would set it): packets queued from other threads (our PUBACKs) wake
        # its select through its socket pair, instead of being written from the event loop's thread
        client._thread = thread
        thread.start()
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
            await asyncio.to_thread(_stop, client, thread)


class _Acker:
    """Releases the PUBACK of one QoS 1 message once the pipeline has its readings safe."""

    __slots__ = ("batch", "mid")

    def __init__(self, batch: _AckBatch, mid: int) -> None:
        self.batch = batch
        self.mid = mid

    def __call__(self) -> None:
        self.batch.add(self.mid)


class _Qos2Acker:
    """Completes a QoS 2 message once its readings are safe (paho's ack is thread-safe)."""

    __slots__ = ("client", "mid")

    def __init__(self, client: mqtt.Client, mid: int) -> None:
        self.client = client
        self.mid = mid

    def __call__(self) -> None:
        self.client.ack(self.mid, 2)


def _settle(fut: asyncio.Future[None], error: str | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(DriverUnavailable(error))


def _stop(client: mqtt.Client, thread: threading.Thread) -> None:
    client.disconnect()
    thread.join(STOP_TIMEOUT_S)
    if thread.is_alive():  # blocked in a socket call: closing the socket ends it
        with contextlib.suppress(Exception):
            sock = client.socket()
            if sock is not None:
                sock.close()
        thread.join(STOP_TIMEOUT_S)
