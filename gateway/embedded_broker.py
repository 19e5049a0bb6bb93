"""An MQTT broker inside the gateway process (amqtt), for `kartech demo` and small benches without Mosquitto.

It admits two principals, each with credentials drawn at every start and kept in memory only:

- "gateway": the gateway's own clients (the MQTT driver, the state publisher, the MQTT notification channel);
- "devices": the machines and simulators publishing telemetry.

Anonymous clients and wrong passwords are refused (CONNACK 5, not authorised; 4, bad user name or password). Only
the gateway may publish on its own topics (`AccessRules.gateway_topics`: the state and alert topics), also as a
will message; devices may not subscribe to them either. A client id the gateway uses (its fixed ids, its prefixes,
or any id a gateway connection used on this broker) is refused to anyone but the gateway, so no other client can
knock a gateway client off the broker by taking over its session.

amqtt checks credentials only after it has already taken over the session of a client id (and thrown the connected
client out), and it never checks will topics; so the checks on CONNECT run in front of it: connections arrive on our
own listening socket, the CONNECT is read and judged here, and only an admitted connection is handed to amqtt
(`Broker.external_connected`, its public API for listeners it does not run). The per-message topic rules run inside
amqtt as its plugins (`_PasswordCheck`, `_TopicRules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from amqtt.adapters import BufferReader, ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, NOT_AUTHORIZED, UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from drivers.mqtt.config import MqttBroker
from gateway.config.operations import MqttChannel
from gateway.config.site import SiteConfig
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

GATEWAY = "gateway"
DEVICES = "devices"
CONNECT_TIMEOUT_S = 10.0  # a connection must send its CONNECT within this time
MAX_CONNECT_BYTES = 64 * 1024  # larger CONNECT packets (before authentication) are refused
MAX_CONNECTIONS = 1000
_LISTENER = "default"


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    @classmethod
    def generate(cls, username: str) -> Credentials:
        return cls(username, secrets.token_urlsafe(24))


@dataclass(frozen=True, slots=True)
class AccessRules:
    """Who may connect to the embedded broker and what the devices may not do."""

    gateway: Credentials
    devices: Credentials
    gateway_topics: tuple[str, ...] = ()
    """Topic filters only the gateway may publish to (and devices may not subscribe to)."""
    gateway_client_ids: frozenset[str] = frozenset()
    gateway_client_id_prefixes: tuple[str, ...] = ()

    @classmethod
    def generate(cls, *, gateway: Credentials | None = None, gateway_topics: tuple[str, ...] = (),
                 gateway_client_ids: frozenset[str] = frozenset(),
                 gateway_client_id_prefixes: tuple[str, ...] = ()) -> AccessRules:
        """Fresh random credentials for both principals; `gateway`: the site config's own, if it sets some."""
        devices = Credentials.generate(DEVICES)
        if gateway is not None and gateway.username == devices.username:
            raise ValueError(f'the user name "{DEVICES}" is the embedded broker\'s own for the devices; '
                             "choose another one for the gateway")
        return cls(gateway or Credentials.generate(GATEWAY), devices, gateway_topics, gateway_client_ids,
                   gateway_client_id_prefixes)

    def principal(self, username: str | None, password: str | None) -> str | None:
        """GATEWAY or DEVICES for valid credentials, else None (compared in constant time)."""
        if username is None or password is None:
            return None
        for creds, name in ((self.gateway, GATEWAY), (self.devices, DEVICES)):
            if hmac.compare_digest(username.encode(), creds.username.encode()) and \
                    hmac.compare_digest(password.encode(), creds.password.encode()):
                return name
        return None

    def is_gateway_topic(self, topic_or_filter: str) -> bool:
        return any(filters_overlap(topic_or_filter, f) for f in self.gateway_topics)

    def is_gateway_client_id(self, client_id: str) -> bool:
        return client_id in self.gateway_client_ids or client_id.startswith(self.gateway_client_id_prefixes)


def template_filter(template: str, site_id: str) -> str:
    """The topic filter of a topic template: {site} filled in, a level with any other {placeholder} becomes +."""
    levels = template.replace("{site}", site_id).split("/")
    return "/".join("+" if "{" in level and "}" in level else level for level in levels)


def filters_overlap(a: str, b: str) -> bool:
    """True when some topic matches both filters (a topic is a filter without wildcards)."""
    for x, y in zip_longest(a.split("/"), b.split("/")):
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and x != "+" and y != "+":
            return False
    return True


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, rules: AccessRules) -> None:
        self.host = host
        self.port = port
        self.rules = rules
        self._broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._used_by_gateway: set[str] = set()  # client ids gateway connections used on this broker
        self._refusals_logged: set[str] = set()

    async def start(self) -> int:
        """Start listening; with port 0 the system picks a free port."""
        for logger in ("amqtt", "transitions"):  # amqtt warns about its own optional plugins at every start
            logging.getLogger(logger).setLevel(logging.ERROR)
        r = self.rules
        broker = Broker({
            "listeners": {_LISTENER: {"type": "external", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "plugins": {
                f"{__name__}._PasswordCheck": {"users": {r.gateway.username: r.gateway.password,
                                                         r.devices.username: r.devices.password}},
                f"{__name__}._TopicRules": {"gateway_user": r.gateway.username,
                                            "gateway_topics": list(r.gateway_topics)},
            },
        })
        broker._subscriptions = _Subscriptions()  # amqtt 0.12's own walks lose messages: see _Subscriptions
        await broker.start()
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
        except OSError as err:
            await broker.shutdown()
            raise OSError(f"embedded MQTT broker could not listen on {self.host}:{self.port}: {err}") from err
        self._broker = broker
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("embedded MQTT broker listening on %s:%d (anonymous clients refused)", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._broker is not None:  # ends the sessions of the connected clients
            await self._broker.shutdown()
            self._broker = None
        for task in list(self._connections):  # whatever is left (e.g. a client still to send its CONNECT)
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._connections) > MAX_CONNECTIONS:
                log.warning("embedded MQTT broker: %d connections open; refusing more", MAX_CONNECTIONS)
                return
            await self._serve(reader, writer)
        except (OSError, AMQTTError, MQTTError, NoDataError) as err:
            log.debug("embedded MQTT broker: connection ended: %s", err)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                raw = await _read_connect(reader)
        except (TimeoutError, asyncio.IncompleteReadError):
            return
        if raw is None:
            log.warning("embedded MQTT broker: %s did not start with a valid CONNECT; closed", peer)
            return
        try:
            connect = await ConnectPacket.from_stream(BufferReader(raw))
        except (AMQTTError, MQTTError, NoDataError, UnicodeDecodeError, IndexError, ValueError) as err:
            log.warning("embedded MQTT broker: unreadable CONNECT from %s (%s); closed", peer, err)
            return
        code, reason = self._judge(connect)
        if code:
            first = reason not in self._refusals_logged and len(self._refusals_logged) < 1000
            if first:
                self._refusals_logged.add(reason)
            log.log(logging.WARNING if first else logging.DEBUG,  # a client retrying does not flood the log
                    "embedded MQTT broker refused client %r from %s: %s", connect.client_id, peer, reason)
            writer.write(ConnackPacket.build(0, code).to_bytes())
            with contextlib.suppress(OSError):
                await writer.drain()
            return
        if self._broker is None:
            return
        await self._broker.external_connected(_Replay(raw, reader), StreamWriterAdapter(writer), _LISTENER)

    def _judge(self, connect: ConnectPacket) -> tuple[int, str]:
        """(0, "") to admit the CONNECT, else (CONNACK return code, why)."""
        if connect.proto_level != 4:
            return UNACCEPTABLE_PROTOCOL_VERSION, f"protocol level {connect.proto_level}; only MQTT 3.1.1 is spoken"
        if not connect.username:
            return NOT_AUTHORIZED, "no user name (anonymous clients are refused)"
        who = self.rules.principal(connect.username, connect.password)
        if who is None:
            return BAD_USERNAME_PASSWORD, f"wrong user name or password (user {connect.username!r})"
        client_id = connect.client_id or ""
        if who == GATEWAY:
            if client_id and not self.rules.is_gateway_client_id(client_id):  # not one id per notification
                self._used_by_gateway.add(client_id)
            return 0, ""
        if client_id in self._used_by_gateway or self.rules.is_gateway_client_id(client_id):
            return NOT_AUTHORIZED, f"client id {client_id!r} belongs to the gateway"
        if connect.will_flag and connect.will_topic and self.rules.is_gateway_topic(connect.will_topic):
            return NOT_AUTHORIZED, f"will topic {connect.will_topic!r} is the gateway's own"
        return 0, ""


async def _read_connect(reader: asyncio.StreamReader) -> bytes | None:
    """The raw bytes of the first packet if it is a CONNECT of a sane size, else None."""
    first = await reader.readexactly(1)
    if first[0] >> 4 != 1:
        return None
    length_bytes = b""
    remaining, multiplier = 0, 1
    for _ in range(4):
        b = await reader.readexactly(1)
        length_bytes += b
        remaining += (b[0] & 0x7F) * multiplier
        if not b[0] & 0x80:
            break
        multiplier *= 128
    else:
        return None
    if remaining > MAX_CONNECT_BYTES:
        return None
    return first + length_bytes + await reader.readexactly(remaining)


class _Replay(ReaderAdapter):  # type: ignore[misc]  # amqtt is untyped here
    """The connection's reader, with the CONNECT already read put back in front."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self._head = head
        self._reader = reader

    async def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + await self._reader.read(n), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += await self._reader.readexactly(n - len(data))
            return data
        if n < 0:
            return await self._reader.read(n)
        return await self._reader.readexactly(n)

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class _PasswordCheck(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt plugin: the same credentials again, inside the broker (the CONNECT was judged before already)."""

    @dataclass
    class Config:
        users: dict[str, str] = field(default_factory=dict)

    async def authenticate(self, *, session: Session) -> bool | None:
        users: dict[str, str] = self.context.config.users
        expected = users.get(session.username or "")
        return expected is not None and hmac.compare_digest((session.password or "").encode(), expected.encode())


class _Subscriptions(dict[str, Any]):
    """amqtt's subscriptions (topic filter -> sessions), walked over a copy.

    amqtt 0.12 walks this dictionary across awaits: while it delivers a message (it awaits the topic rules for each
    matching filter) and while it sends a session's retained messages. A SUBSCRIBE to a new filter, or the last
    UNSUBSCRIBE of one, in between ended the walk with "dictionary changed size during iteration": the message was
    delivered to no subscriber after that point (a Sparkplug edge node subscribing to its NCMD topic during the
    demo's traffic lost other machines' messages). No public API sets this; the attribute is replaced once, before
    the broker starts (tests/integration/test_embedded_broker_clients.py proves no message is lost)."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().__iter__()))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(super().items())


class _TopicRules(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt plugin: only the gateway publishes on (and reads) the gateway's topics."""

    @dataclass
    class Config:
        gateway_user: str = ""
        gateway_topics: list[str] = field(default_factory=list)

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        cfg: Any = self.context.config
        if session is not None and session.username == cfg.gateway_user:
            return True
        if topic is None:
            return False
        return not any(filters_overlap(topic, f) for f in cfg.gateway_topics)


GATEWAY_NAMESPACE = "kartech/#"  # the default state and alert topics live here; reserved even when not configured


def rules_for(cfg: SiteConfig, broker: MqttBroker) -> AccessRules:
    """Fresh access rules for the embedded `broker` of this site: its gateway topics and client ids.

    A site config that sets username and password on the embedded broker gives the gateway's own credentials."""
    from gateway.notify.channels import CLIENT_ID_PREFIX as NOTIFY_PREFIX
    from gateway.state.topics import CLIENT_ID_PREFIX as STATE_PREFIX

    if (broker.username is None) != (broker.password is None):
        raise ConfigError(f"mqtt.brokers {broker.id}: an embedded broker takes both username and password "
                          "(the gateway's own credentials) or neither (then they are drawn at every start)")
    topics = [GATEWAY_NAMESPACE]
    if cfg.state.mqtt is not None and cfg.state.mqtt.broker == broker.id:
        topics.append(template_filter(cfg.state.mqtt.topic, cfg.site.id))
    topics += [template_filter(ch.topic, cfg.site.id) for ch in cfg.notifications.channels
               if isinstance(ch, MqttChannel) and ch.broker == broker.id]
    gateway = Credentials(broker.username, broker.password) if broker.username and broker.password else None
    try:
        return AccessRules.generate(
            gateway=gateway, gateway_topics=tuple(dict.fromkeys(topics)),
            gateway_client_ids=frozenset({broker.driver_client_id(cfg.site.id)}),
            gateway_client_id_prefixes=(STATE_PREFIX, NOTIFY_PREFIX))
    except ValueError as err:
        raise ConfigError(f"mqtt.brokers {broker.id}: {err}") from err
