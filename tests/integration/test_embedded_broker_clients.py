"""The embedded broker (real amqtt, real paho clients): who may connect, publish and keep a client id."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kit.poll import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from gateway.embedded_broker import AccessRules, Credentials, EmbeddedBroker
from simulators.services import LOOPBACK

pytestmark = pytest.mark.integration

SITE = "lab1"
DRIVER_ID = f"kartech-{SITE}-lab"


class Running:
    """An EmbeddedBroker on its own event loop in a thread (the paho clients of the test block)."""

    def __init__(self, rules: AccessRules) -> None:
        self.rules = rules
        self.clients: list[Client] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.broker = EmbeddedBroker(LOOPBACK, 0, rules=rules)
        self.port = asyncio.run_coroutine_threadsafe(self.broker.start(), self.loop).result(15)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Client:
    def __init__(self, port: int, creds: Credentials | None, client_id: str | None = None, *,
                 will_topic: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connack: list[Any] = []
        self.suback: list[list[Any]] = []
        self.disconnects = 0
        self.connected = threading.Event()
        self.answered = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if creds is not None:
            c.username_pw_set(creds.username, creds.password)
        if will_topic is not None:
            c.will_set(will_topic, b"gone", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        c.on_subscribe = lambda _c, _u, _mid, codes, _p: self.suback.append(list(codes))
        c.on_disconnect = self._on_disconnect
        self.client = c
        c.connect(LOOPBACK, port, keepalive=30)
        c.loop_start()
        assert self.answered.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.connack.append(rc)
        if not rc.is_failure:
            self.connected.set()
        self.answered.set()

    def _on_disconnect(self, *_a: Any) -> None:
        self.disconnects += 1

    @property
    def refused(self) -> bool:
        return bool(self.connack) and self.connack[-1].is_failure

    def subscribe(self, topic: str) -> None:
        n = len(self.suback)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.suback) > n, f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def got(self, payload: bytes) -> bool:
        return any(p == payload for _t, p, _r in self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker() -> Iterator[Running]:
    rules = AccessRules.generate(gateway_topics=("kartech/#",), gateway_client_ids=frozenset({DRIVER_ID}),
                                 gateway_client_id_prefixes=("kartech-state-", "kartech-notify-"))
    running = Running(rules)
    yield running
    for c in running.clients:
        c.close()
    running.close()


def connect(broker: Running, creds: Credentials | None, client_id: str | None = None, **kw: Any) -> Client:
    c = Client(broker.port, creds, client_id, **kw)
    broker.clients.append(c)
    return c


def test_anonymous_and_wrong_passwords_are_refused(broker: Running) -> None:
    anonymous = connect(broker, None)
    assert anonymous.refused
    assert str(anonymous.connack[-1]) == "Not authorized"
    wrong = connect(broker, Credentials(broker.rules.devices.username, "guess"))
    assert wrong.refused
    assert str(wrong.connack[-1]) == "Bad user name or password"
    swapped = connect(broker, Credentials(broker.rules.gateway.username, broker.rules.devices.password))
    assert swapped.refused
    assert connect(broker, broker.rules.devices).connected.is_set()
    assert connect(broker, broker.rules.gateway).connected.is_set()


def test_devices_cannot_publish_on_the_gateways_topics(broker: Running) -> None:
    gw = connect(broker, broker.rules.gateway, DRIVER_ID)
    gw.subscribe("#")
    dev = connect(broker, broker.rules.devices, f"kartech-sim-{SITE}-1")
    dev.publish(f"kartech/{SITE}/fdm-01/state", b'{"state": "error"}', retain=True)   # a fake machine state
    dev.publish(f"kartech/{SITE}/alerts/fdm-01", b'{"severity": "high"}')             # a fake high alert
    dev.publish(f"lab/{SITE}/fdm-01/report", b"marker")                                # allowed, sent after them
    wait_until(lambda: gw.got(b"marker"), "the devices' own telemetry")
    assert [t for t, _p, _r in gw.messages] == [f"lab/{SITE}/fdm-01/report"]
    # and nothing was retained either: a new subscriber to the gateway's topics gets nothing stored
    late = connect(broker, broker.rules.gateway)
    late.subscribe("#")
    dev.publish(f"lab/{SITE}/fdm-01/report", b"marker-2")
    wait_until(lambda: late.got(b"marker-2"), "the second marker")
    assert [t for t, _p, _r in late.messages] == [f"lab/{SITE}/fdm-01/report"]
    # nor may they read the gateway's topics, nor leave a will message there
    dev.subscribe("kartech/#")
    dev.subscribe("#")
    assert [codes[0].is_failure for codes in dev.suback] == [True, True]
    assert connect(broker, broker.rules.devices, will_topic=f"kartech/{SITE}/fdm-01/state").refused


def test_the_gateway_publishes_retained_state_that_devices_cannot_overwrite(broker: Running) -> None:
    topic = f"kartech/{SITE}/fdm-01/state"
    state = connect(broker, broker.rules.gateway, "kartech-state-0a1b2c3d")
    state.publish(topic, b'{"state": "printing"}', retain=True)
    dev = connect(broker, broker.rules.devices)
    dev.publish(topic, b'{"state": "idle"}', retain=True)
    reader = connect(broker, broker.rules.gateway)
    reader.subscribe(f"lab/{SITE}/#")
    dev.publish(f"lab/{SITE}/fdm-01/report", b"marker")
    wait_until(lambda: reader.got(b"marker"), "the marker")
    reader.subscribe("kartech/#")
    wait_until(lambda: any(t == topic for t, _p, _r in reader.messages), "the retained state")
    assert [(p, r) for t, p, r in reader.messages if t == topic] == [(b'{"state": "printing"}', True)]


@pytest.mark.parametrize("client_id", [DRIVER_ID, "kartech-state-0a1b2c3d", "kartech-notify-5e6f7a8b",
                                       "scada-of-the-lab"])
def test_devices_cannot_take_a_gateway_client_id(broker: Running, client_id: str) -> None:
    gw = connect(broker, broker.rules.gateway, client_id)  # "scada-of-the-lab": known once the gateway used it
    gw.subscribe(f"lab/{SITE}/#")
    thief = connect(broker, broker.rules.devices, client_id)
    assert thief.refused
    assert str(thief.connack[-1]) == "Not authorized"
    dev = connect(broker, broker.rules.devices)
    dev.publish(f"lab/{SITE}/pm-01/power/power_w", b"marker")
    wait_until(lambda: gw.got(b"marker"), "the gateway client still receiving")
    assert gw.disconnects == 0
    assert gw.client.is_connected()


def test_the_gateway_may_take_its_client_id_back(broker: Running) -> None:
    """A device that connects first with the gateway's id (before the gateway ever did) loses it to the gateway."""
    squatter = connect(broker, broker.rules.devices, "scada-of-the-lab")
    assert squatter.connected.is_set()
    gw = connect(broker, broker.rules.gateway, "scada-of-the-lab")
    assert gw.connected.is_set()
    gw.subscribe(f"lab/{SITE}/#")
    assert connect(broker, broker.rules.devices, "scada-of-the-lab").refused
    connect(broker, broker.rules.devices).publish(f"lab/{SITE}/pm-01/power/power_w", b"marker")
    wait_until(lambda: gw.got(b"marker"), "the gateway client receiving")
    assert gw.disconnects == 0


def test_new_subscriptions_during_traffic_lose_no_message(broker: Running) -> None:
    """amqtt walks its subscriptions while it delivers a message, yielding to the topic rules on the way: a client
    subscribing to a new filter meanwhile (a Sparkplug edge node to its NCMD topic, say) used to end that walk with
    "dictionary changed size during iteration" and the message was delivered to no one."""
    earlier = connect(broker, broker.rules.devices, "dev-earlier")
    earlier.subscribe(f"lab/{SITE}/#")  # walked first: the delivery to it yields to the topic rules
    gw = connect(broker, broker.rules.gateway, DRIVER_ID)
    gw.subscribe(f"lab/{SITE}/m/+")
    publisher = connect(broker, broker.rules.devices, "dev-pub")
    newcomer = connect(broker, broker.rules.devices, "dev-sub")
    n = 2000
    infos = []
    for i in range(n):
        infos.append(publisher.client.publish(f"lab/{SITE}/m/{i}", b"%d" % i, qos=1))
        if i % 10 == 0:
            newcomer.client.subscribe(f"other/{i}/#", qos=1)  # a filter nobody has subscribed to yet
    for info in infos:
        info.wait_for_publish(10)
    wait_until(lambda: len(gw.messages) >= n, "every message at the gateway's subscription", timeout_s=15)
    assert sorted(int(p) for _t, p, _r in gw.messages) == list(range(n))
