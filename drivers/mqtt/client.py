"""The one way the gateway builds an MQTT client for a configured broker.

Used by the MQTT driver, the MQTT notification channel (gateway/notify/channels.py) and the retained state
publisher (gateway/state/topics.py), so TLS, credentials, protocol version, sessions and client ids mean the same
everywhere. The drivers that read a broker (MQTT, Sparkplug, Bambu) share one connection scaffold, `BrokerLink`.
Only paho's public API is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.config import MqttBroker, TlsOptions
from gateway.errors import DriverUnavailable

if TYPE_CHECKING:
    from gateway.driver import DriverContext

Session = Literal["persistent", "clean"]
SELECT_TIMEOUT_S = 1.0  # keep-alive pings are due at most this late
CONNECT_TIMEOUT_S = 10.0  # how long a broker may take to answer CONNECT
STOP_TIMEOUT_S = 2.0  # how long a clean disconnect may take


def tls_context(tls: TlsOptions) -> ssl.SSLContext:
    """The TLS settings of a broker: its CA, an optional client certificate, and (bench only) no verification."""
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def new_client(broker: MqttBroker, client_id: str, *, session: Session = "clean", manual_ack: bool = False,
               reconnect: bool = False) -> mqtt.Client:
    """A paho client for `broker`: its protocol version, credentials and TLS. `session: persistent` keeps our
    subscriptions and queued QoS 1 messages at the broker while we are away (MQTT 3.1.1: clean_session false; MQTT 5:
    see `connect_args`). Connect it with `connect_args(broker, session)`. `reconnect`: paho's own loop
    (`loop_start`) reconnects by itself after a loss; without it the owner decides when to connect again."""
    v5 = broker.protocol == "mqtt5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else session == "clean",
        manual_ack=manual_ack,
        reconnect_on_failure=reconnect,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls is not None:
        client.tls_set_context(tls_context(broker.tls))
    return client


def connect_args(broker: MqttBroker, session: Session = "clean", *,
                 receive_maximum: int | None = None) -> dict[str, Any]:
    """Keyword arguments of `client.connect`/`connect_async` besides host and port: keep-alive, and with MQTT 5 the
    clean start flag, the session expiry (`session_expiry_s` when persistent, 0 when clean) and how many
    unacknowledged QoS 1 messages the broker may send us."""
    if broker.protocol != "mqtt5":
        return {"keepalive": broker.keepalive_s}
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = broker.session_expiry_s if session == "persistent" else 0
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return {"keepalive": broker.keepalive_s, "clean_start": session == "clean", "properties": props}


class NetworkThread:
    """Runs a connected paho client's network loop on a thread of ours, with paho's external-loop API
    (`socket`, `loop_read`, `loop_write`, `loop_misc`, `want_write`).

    Every paho call happens on this thread: other threads hand work over with `call` (PUBACKs released by the
    pipeline, the final disconnect), which wakes the loop once per burst. Whatever the loop raises is given to
    `on_fault`; `on_exit` runs when the loop ends, for any reason.
    """

    def __init__(self, client: mqtt.Client, name: str, *, on_fault: Callable[[BaseException], None],
                 on_exit: Callable[[], None]) -> None:
        self.client = client
        self._on_fault = on_fault
        self._on_exit = on_exit
        self._calls: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def call(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the network thread (thread-safe); calls run in the order they were made."""
        with self._lock:
            self._calls.append(fn)
            first = len(self._calls) == 1
        if first:
            with contextlib.suppress(OSError):  # full (it is woken anyway) or closed (the loop has ended)
                self._wake_w.send(b"\0")

    def stop(self, timeout_s: float) -> None:
        """Disconnect cleanly and wait for the thread to end; a thread stuck in a socket call is unblocked."""
        self._stopping = True
        if self.thread.ident is None:  # never started
            self._close_wake()
            return
        self.call(self.client.disconnect)
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                sock = self.client.socket()
                if sock is not None:
                    sock.close()
            self.thread.join(timeout_s)
        self._close_wake()

    def _close_wake(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as err:
            if not self._stopping:
                self._on_fault(err)
        finally:
            self._on_exit()

    def _loop(self) -> None:
        client = self.client
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            sock = client.socket()
            if sock is None:
                return
            # TLS may hold decrypted bytes that select cannot see
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            try:
                readable, writable, _ = select.select([sock, self._wake_r], [sock] if client.want_write() else [],
                                                      [], 0.0 if pending else SELECT_TIMEOUT_S)
            except (OSError, ValueError, TypeError):  # the socket was closed under us
                return
            if self._wake_r in readable:
                self._run_calls()
                if client.socket() is None:
                    return
            if sock in readable or pending:
                rc = client.loop_read()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
            if sock in writable or client.want_write():
                rc = client.loop_write()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
            rc = client.loop_misc()

    def _run_calls(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        with self._lock:
            calls, self._calls = self._calls, []
        for fn in calls:
            fn()


class BrokerLink:
    """One connection of a driver to a broker, from CONNECT until it is lost.

    It installs the client's `on_connect` and `on_disconnect`; `open` connects (in a thread: paho's connect blocks),
    runs the network loop on a `NetworkThread` and waits for the CONNACK; `until_lost` raises `DriverUnavailable`
    once the connection is gone, so the supervisor reconnects with backoff. `on_accept(client, flags)` runs on the
    network thread on every accepted CONNACK (subscribe there); `refused(rc)` words a refused one. `where` names
    the other end in messages ("broker host:port").
    """

    def __init__(self, ctx: DriverContext, client: mqtt.Client, name: str, where: str, *,
                 on_accept: Callable[[mqtt.Client, mqtt.ConnectFlags], None],
                 refused: Callable[[ReasonCode], str] = lambda rc: f"broker refused the connection: {rc}") -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.where = where
        self.network = NetworkThread(client, f"paho {name}", on_fault=ctx.fault_threadsafe, on_exit=self._ended)
        self.acks = _AckBatch(self.network)
        self._on_accept = on_accept
        self._refused = refused
        self._accepted: asyncio.Future[None] = self.loop.create_future()
        self._lost = asyncio.Event()
        self._lost_reason = "connection closed"
        # an exception in a callback would end paho's network loop silently: it restarts the driver instead
        client.on_connect = ctx.guard(self._on_connect)
        client.on_disconnect = ctx.guard(self._on_disconnect)

    def acker(self, msg: mqtt.MQTTMessage) -> Callable[[], None] | None:
        """What acknowledges a QoS 1 or 2 message once the pipeline has its readings safe (None for QoS 0)."""
        return _Acker(self.acks, msg.mid, msg.qos) if msg.qos else None

    @contextlib.asynccontextmanager
    async def open(self, host: str, port: int, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                   explain: Callable[[Exception], str | None] = lambda _err: None,
                   farewell: Callable[[], object] | None = None, **connect_kwargs: Any) -> AsyncIterator[None]:
        """Connected for the body (which ends in `until_lost`); on the way out, however it ends, `farewell` runs on
        the network thread and the client disconnects cleanly. `explain` may word a failed connect itself."""
        try:
            try:
                await asyncio.to_thread(self.client.connect, host, port, **connect_kwargs)
            except (OSError, ssl.SSLError, ValueError) as err:
                raise DriverUnavailable(explain(err) or f"cannot connect to {self.where}: {err}") from err
            self.network.start()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation (gh-86296)
                async with asyncio.timeout(connect_timeout_s):
                    await self._accepted
            except TimeoutError as err:
                raise DriverUnavailable(f"{self.where} did not answer CONNECT in {connect_timeout_s:g} s") from err
            yield
        finally:
            if farewell is not None:
                self.network.call(farewell)
            await asyncio.to_thread(self.network.stop, STOP_TIMEOUT_S)

    async def until_lost(self, timeout_s: float | None = None) -> None:
        """Raise `DriverUnavailable` once the connection is lost; return if `timeout_s` passes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._lost.wait()
        if self._lost.is_set():
            raise DriverUnavailable(f"lost connection to {self.where}: {self._lost_reason}")

    def _on_connect(self, c: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self.loop.call_soon_threadsafe(_settle, self._accepted, self._refused(rc))
            return
        self._on_accept(c, flags)
        self.loop.call_soon_threadsafe(_settle, self._accepted, None)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._lost_reason = str(rc)
        self.loop.call_soon_threadsafe(self._lost.set)

    def _ended(self) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the gateway has stopped
            self.loop.call_soon_threadsafe(self._lost.set)


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
