"""The Sparkplug B driver as a host application against a real Mosquitto and a simulated Sparkplug edge node.

The edge node (simulators/sparkplug_sim.py) publishes Tahu protobuf payloads as Sparkplug 3.0 asks; a spy client on
the same broker sees what the gateway publishes (rebirth requests, its retained STATE). The driver runs under the
real supervisor (kit.driver).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from kit.driver import DriverHarness, supervised
from kit.poll import until, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.config import MqttBroker
from drivers.sparkplug.config import SparkplugMachine
from drivers.sparkplug.driver import SparkplugDriver
from drivers.sparkplug.payload import decode
from gateway.backoff import Backoff
from gateway.machines import MachineMeta
from simulators.services import LOOPBACK, Mosquitto
from simulators.sparkplug_sim import EdgeNode

NODE = "edge-1"


def machines(group: str) -> list[SparkplugMachine]:
    common = {"driver": "sparkplug", "broker": "lab", "group": group, "edge_node": NODE, "host_id": f"gw-{group}",
              "expected_interval_s": 1}
    return [SparkplugMachine.model_validate(m) for m in (
        {**common, "id": "cnc-01", "name": "CNC", "kind": "cnc", "device": "cnc", "signals": {
            "spindle_speed": {"metric": "Spindle/Speed", "unit": "rpm"},
            "program": {"metric": "Program/Name"},
            "part_count": {"metric": "Program/PartCount", "unit": "count"},
            "execution_state": {"metric": "Status/Execution"},
            "alarm_code": {"metric": "Status/AlarmCode"}}},
        {**common, "id": "furnace-01", "name": "Furnace", "kind": "furnace", "device": "furnace", "signals": {
            "temperature": {"metric": "Chamber/Temperature", "unit": "degC"},
            "door_open": {"metric": "Door/Open"},
            "programme": {"metric": "Programme/Segment"}}},
        {**common, "id": "node-01", "name": "Edge node", "kind": "gateway", "signals": {
            "boot_time": {"metric": "Properties/Boot Time"},
            "uptime_s": {"metric": "Properties/Uptime", "unit": "s"},
            "hardware": {"metric": "Properties/Hardware Make"}}},
    )]


def metas(ms: list[SparkplugMachine]) -> list[MachineMeta]:
    return [MachineMeta(id=m.id, name=m.name, kind=m.kind, driver="sparkplug", site="test",
                        expected_interval_s=m.expected_interval_s) for m in ms]


class Spy:
    """A client that records what the gateway publishes: rebirth requests and its STATE messages."""

    def __init__(self, port: int, group: str) -> None:
        self.rebirths = 0
        self.states: list[tuple[dict[str, Any], bool]] = []  # (payload, retained)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spy-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.group = group
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        self.client.subscribe([(f"spBv1.0/{group}/NCMD/#", 1), (f"spBv1.0/STATE/gw-{group}", 1)])
        assert subscribed.wait(5)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if "/STATE/" in msg.topic:
            self.states.append((json.loads(msg.payload), bool(msg.retain)))
            return
        p = decode(msg.payload)
        if p is not None and any(m.name == "Node Control/Rebirth" and m.boolean_value for m in p.metrics):
            self.rebirths += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_state(port: int, group: str) -> dict[str, Any] | None:
    """The retained STATE of the gateway's host id, as a new subscriber gets it."""
    got: list[dict[str, Any]] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(json.loads(msg.payload))
        done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"state-{uuid.uuid4().hex[:8]}")
    c.on_message = on_message
    c.on_subscribe = lambda *_a: c.publish(f"probe/{group}", b"x", qos=1)  # a marker after the retained message
    c.connect(LOOPBACK, port)
    c.subscribe([(f"spBv1.0/STATE/gw-{group}", 1), (f"probe/{group}", 1)])
    c.loop_start()
    try:
        assert done.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0] if got else None


@contextlib.contextmanager
def edge_node(port: int, ms: list[SparkplugMachine], **kw: Any) -> Iterator[EdgeNode]:
    node = EdgeNode(ms[0].group, NODE, [m for m in ms if m.device], port=port, interval_s=0.2, **kw)
    node.start()
    try:
        assert node.connected.wait(5)
        yield node
    finally:
        node.stop()


@asynccontextmanager
async def host(port: int, ms: list[SparkplugMachine], protocol: str = "mqtt5") -> AsyncIterator[DriverHarness]:
    broker = MqttBroker(id="lab", host=LOOPBACK, port=port, protocol=protocol)  # type: ignore[arg-type]
    driver = SparkplugDriver(broker, ms, "test", ms[0].effective_host_id("test"))
    async with supervised(driver, metas(ms), backoff=Backoff(initial_s=0.2, cap_s=0.5)) as gw:
        yield gw


def latest(gw: DriverHarness, machine: str, signal: str) -> object:
    found = gw.of(machine, signal)
    return found[-1].value if found else None


async def test_births_and_aliases_give_typed_values(mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    spy = Spy(mosquitto.port, group)
    try:
        async with host(mosquitto.port, ms) as gw:
            await until(lambda: spy.states, "the gateway's STATE")
            with edge_node(mosquitto.port, ms) as node:
                await gw.wait_for("values of every machine",
                                  lambda: all(gw.of(m, s) for m, s in (("cnc-01", "part_count"),
                                              ("furnace-01", "door_open"), ("node-01", "uptime_s"))))
                await gw.wait_for("data by alias after the births", lambda: len(gw.of("cnc-01", "spindle_speed")) > 3)
                assert node.rebirth_requests == 0  # the gateway was there for the births
                assert spy.rebirths == 0
        assert isinstance(latest(gw, "cnc-01", "spindle_speed"), float)
        assert isinstance(latest(gw, "cnc-01", "program"), str)
        assert str(latest(gw, "cnc-01", "program")).endswith(".NC")
        assert isinstance(latest(gw, "cnc-01", "part_count"), int)
        assert latest(gw, "cnc-01", "execution_state") in ("NotAvailable", "OutOfService", "NotExecuting", "Executing")
        assert isinstance(latest(gw, "cnc-01", "alarm_code"), int)
        assert type(latest(gw, "furnace-01", "door_open")) is bool
        assert isinstance(latest(gw, "furnace-01", "temperature"), float)
        assert latest(gw, "node-01", "hardware") == "Kartech virtual edge node"
        boot = latest(gw, "node-01", "boot_time")
        assert isinstance(boot, str)
        assert boot.endswith("Z")
        assert type(latest(gw, "node-01", "uptime_s")) is int
        assert {r.unit for r in gw.of("cnc-01", "spindle_speed")} == {"rpm"}
        assert gw.bad("before_birth") == gw.bad("sequence_gap") == 0
    finally:
        spy.close()


async def test_data_before_birth_is_not_used_and_asks_for_one_rebirth(mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    spy = Spy(mosquitto.port, group)
    try:
        with edge_node(mosquitto.port, ms) as node:  # born before the gateway is there: it sees data first
            node.answer_rebirth = False
            async with host(mosquitto.port, ms, protocol="mqtt311") as gw:
                await gw.wait_for("several data messages before any birth", lambda: gw.bad("before_birth") >= 6)
                assert gw.readings == []  # aliases without a birth mean nothing
                # the request and the counts come together once the reorder timeout has passed; the node and the
                # spy each receive the request in their own time
                await until(lambda: spy.rebirths >= 1 and node.rebirth_requests >= 1, "the rebirth request")
                assert node.rebirth_requests == 1
                assert spy.rebirths == 1
                births = node.births
                node.answer_rebirth = True
                node.rebirth()
                await gw.wait_for("values after the births", lambda: gw.of("cnc-01", "program"))
                assert node.births == births + 1
                assert spy.rebirths == 1
    finally:
        spy.close()


async def test_a_sequence_gap_triggers_exactly_one_rebirth_request(mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    spy = Spy(mosquitto.port, group)
    try:
        async with host(mosquitto.port, ms) as gw:
            await until(lambda: spy.states, "the gateway's STATE")
            with edge_node(mosquitto.port, ms) as node:
                await gw.wait_for("values", lambda: gw.of("cnc-01", "part_count"))
                assert node.births == 1
                node.skip_seq(3)
                await until(lambda: node.births == 2, "the rebirth answering the gap")
                sent = node.data_sent
                await until(lambda: node.data_sent > sent + 10, "more data after the rebirth")
                assert node.rebirth_requests == 1
                assert spy.rebirths == 1
                assert gw.bad("sequence_gap") == 1
    finally:
        spy.close()


async def test_messages_delivered_out_of_order_are_put_back_in_order_without_a_rebirth(mosquitto: Mosquitto) -> None:
    """What a clustered broker may do (MQTT orders per topic only): a DDATA delivered after the next message, and a
    rebirth's NBIRTH delivered after its first DBIRTH. Within the reorder timeout both are put back in seq order:
    no rebirth request, nothing counted as bad, the device's values keep coming."""
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    spy = Spy(mosquitto.port, group)
    try:
        async with host(mosquitto.port, ms) as gw:
            await until(lambda: spy.states, "the gateway's STATE")
            with edge_node(mosquitto.port, ms) as node:
                await gw.wait_for("values", lambda: gw.of("cnc-01", "part_count") and gw.of("furnace-01", "door_open"))
                sent = node.data_sent
                node.overtake()
                await until(lambda: node.data_sent > sent + 4, "data after the overtaken message")
                node.overtake()
                births = node.births
                node.rebirth()  # NBIRTH (seq 0) held back behind the first DBIRTH (seq 1)
                assert node.births == births + 1
                after = time.time_ns()
                await gw.wait_for("values of the new session", lambda: gw.of("cnc-01", "spindle_speed", after)
                                  and gw.of("furnace-01", "temperature", after))
                sent = node.data_sent
                await until(lambda: node.data_sent > sent + 4, "more data in the new session")
                assert gw.bad("sequence_gap") == gw.bad("before_birth") == 0
                assert node.rebirth_requests == spy.rebirths == 0
                assert gw.state("cnc-01") != "offline"
    finally:
        spy.close()


async def test_ndeath_marks_devices_offline_and_a_stale_ndeath_does_not(mosquitto: Mosquitto,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    async with host(mosquitto.port, ms) as gw:
        with edge_node(mosquitto.port, ms) as node:
            await gw.wait_for("values", lambda: gw.of("furnace-01", "temperature") and gw.of("cnc-01", "program"))
            assert gw.state("cnc-01") != "offline"
            node.stale_death()
            after = time.time_ns()
            await gw.wait_for("data after the stale NDEATH", lambda: gw.of("cnc-01", "spindle_speed", after))
            assert gw.state("cnc-01") != "offline"
            assert gw.state("furnace-01") != "offline"

            node.device_death("furnace")
            await gw.wait_for("the furnace offline (DDEATH)", lambda: gw.state("furnace-01") == "offline")
            assert gw.state("cnc-01") != "offline"

            node.node_death()
            await gw.wait_for("the node's devices offline (NDEATH)", lambda: gw.state("cnc-01") == "offline")
            assert gw.state("node-01") == "offline"
            # the host does not retry anything: the node's next birth brings its machines back, and the log says so
            lost = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
            assert lost == [f"sparkplug:lab unavailable: Sparkplug edge node {group}/edge-1 died (NDEATH, bdSeq "
                            f"{node.bdseq}); its machines are offline until its next birth (NBIRTH)"], lost

            node.devices["furnace"].alive = True  # the rebirth includes it again
            back = time.time_ns()
            node.rebirth()
            await gw.wait_for("back after the births", lambda: gw.of("furnace-01", "temperature", back)
                              and gw.of("cnc-01", "spindle_speed", back))
            await gw.wait_for("online again", lambda: gw.state("cnc-01") != "offline")


async def test_malformed_payloads_are_counted_and_good_data_continues(mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    async with host(mosquitto.port, ms) as gw:
        with edge_node(mosquitto.port, ms) as node:
            await gw.wait_for("values", lambda: gw.of("cnc-01", "program"))
            node.publish_raw(f"spBv1.0/{group}/DDATA/{NODE}/cnc", b"\xff\xfe\x00not protobuf")
            node.publish_raw(f"spBv1.0/{group}/DDATA/{NODE}", b"")  # a device verb without its device
            node.unknown_alias("cnc")
            await gw.wait_for("bad input counted", lambda: gw.bad("malformed_protobuf") == 1
                              and gw.bad("bad_topic") == 1 and gw.bad("unknown_alias") == 1)
            after = time.time_ns()
            await gw.wait_for("good data after the garbage", lambda: gw.of("cnc-01", "spindle_speed", after))
            assert gw.ctx.is_connected


class _Proxy:
    """A TCP forwarder to the broker whose connections can be cut at once (no MQTT DISCONNECT: the will fires)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server((LOOPBACK, 0))
        self.port = self.server.getsockname()[1]
        self.socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.server.accept()
            except OSError:
                return
            b = socket.create_connection((LOOPBACK, self.target))
            with self._lock:
                self.socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            socks, self.socks = self.socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.server.close()
        self.cut()


async def test_state_is_retained_and_the_will_sets_online_false(mosquitto: Mosquitto) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    proxy = _Proxy(mosquitto.port)
    spy = Spy(mosquitto.port, group)
    try:
        async with host(proxy.port, ms) as gw:
            await gw.wait_for("connected", lambda: gw.ctx.is_connected)
            first = await asyncio.to_thread(wait_until, lambda: retained_state(mosquitto.port, group),
                                            "the retained STATE")
            assert first["online"] is True
            assert abs(first["timestamp"] - time.time() * 1000) < 60_000
            proxy.cut()  # the broker loses the gateway without a DISCONNECT: it publishes the will
            will = {"online": False, "timestamp": first["timestamp"]}  # the will carries the birth's timestamp
            await until(lambda: (will, False) in spy.states, "the will")
            again = await asyncio.to_thread(
                wait_until, lambda: (s := retained_state(mosquitto.port, group)) and s["online"] is True
                and s["timestamp"] > first["timestamp"] and s, "STATE online after the reconnect")
            assert again["online"] is True
        # an intentional stop publishes STATE offline itself (the broker drops the will on DISCONNECT)
        last = retained_state(mosquitto.port, group)
        assert last is not None
        assert last["online"] is False
        assert last["timestamp"] >= again["timestamp"]
    finally:
        spy.close()
        proxy.close()


async def test_a_broker_restart_recovers(tmp_path: Any) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    ms = machines(group)
    with Mosquitto(tmp_path) as broker:
        async with host(broker.port, ms) as gw:
            await gw.wait_for("connected", lambda: gw.ctx.is_connected)
            with edge_node(broker.port, ms) as node:
                await gw.wait_for("values", lambda: gw.of("cnc-01", "program"))
                first = retained_state(broker.port, group)
                assert first is not None
                await asyncio.to_thread(broker.restart, 0.5)
                restarted = time.time_ns()
                await gw.wait_for("fresh values after the restart",
                                  lambda: gw.of("cnc-01", "spindle_speed", restarted)
                                  and gw.of("furnace-01", "temperature", restarted), timeout_s=30)
                state = await asyncio.to_thread(
                    wait_until, lambda: (s := retained_state(broker.port, group)) and s["online"] is True
                    and s["timestamp"] > first["timestamp"] and s, "STATE republished")
                assert state["online"] is True
                assert node.births >= 2  # the edge node's new session began with its births
                assert gw.bad("malformed_protobuf") == 0
