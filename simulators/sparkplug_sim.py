"""A Sparkplug B edge node (Sparkplug 3.0, Eclipse Tahu payloads) on a real broker, with simulated devices.

`EdgeNode` behaves as the specification asks of an edge node:
- CONNECT with the will NDEATH carrying `bdSeq` (Int64, QoS 1, not retained); bdSeq counts connections 0..255;
- subscribe to its NCMD topic (QoS 1), then publish NBIRTH (seq 0, bdSeq, 'Node Control/Rebirth' = false, its
  properties) and one DBIRTH per device, every metric with its name, alias and datatype;
- every tick NDATA (uptime) and DDATA per device with the metrics that changed, by alias only, seq incremented by
  one per message across the node and its devices (255 wraps to 0);
- on NCMD 'Node Control/Rebirth' = true: stop data, publish NBIRTH (same bdSeq, seq 0) and the DBIRTHs again;
- DDEATH for a device that goes away, NDEATH (current bdSeq) before an intentional disconnect.

Devices are the machines of the site file that name this edge node; their values come from the models of
`simulators.dynamics` and `simulators.opcua_models` (a CNC and a furnace in the demo), each configured signal sent as
the metric it names. Test hooks: a sequence gap, data without a birth, a device death and rebirth, a stale NDEATH,
holding rebirth answers back, raw messages.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.config import MqttSection
from drivers.sparkplug.config import SparkplugMachine
from drivers.sparkplug.payload import BDSEQ_METRIC, REBIRTH_METRIC, decode, device_topic, node_topic
from drivers.sparkplug.sparkplug_b_pb2 import DataType, Payload
from gateway.config.models import MachineBase
from simulators.dynamics import Furnace, Model, SignalValue
from simulators.lab import SimulatorEnv
from simulators.opcua_models import Cnc

log = logging.getLogger(__name__)

# a machine signal read from a model value of another name
MODEL_NAMES = {"execution_state": "execution"}
HARDWARE = "Kartech virtual edge node"


def model_for(machine: SparkplugMachine, seed: int) -> Model:
    pick = random.Random(f"{seed}:{machine.id}")
    if machine.kind == "cnc":
        return Cnc(seed=pick.randrange(2**32), start_offset_s=pick.uniform(0, 200))
    if machine.kind == "furnace":
        return Furnace(seed=pick.randrange(2**32), start_offset_s=pick.uniform(0.0, 3 * 3600.0))
    raise ValueError(f'machine "{machine.id}": no Sparkplug simulator for kind "{machine.kind}"; use cnc or furnace')


def datatype_of(value: SignalValue, unit: str | None) -> int:
    if isinstance(value, bool):
        return DataType.Boolean
    if isinstance(value, int):
        return DataType.UInt32 if unit == "count" else DataType.Int32
    if isinstance(value, float):
        return DataType.Double
    return DataType.String


def set_value(m: Payload.Metric, datatype: int, value: SignalValue | None) -> None:
    """Write `value` into the field of `datatype` the way Tahu does (negative signed integers + 2**bits)."""
    if value is None:
        m.is_null = True
        return
    if datatype == DataType.Boolean:
        m.boolean_value = bool(value)
    elif datatype in (DataType.Int8, DataType.Int16, DataType.Int32):
        bits = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32}[datatype]  # type: ignore[index]
        x = int(value)
        m.int_value = x + (1 << bits) if x < 0 else x
    elif datatype in (DataType.UInt8, DataType.UInt16, DataType.UInt32):
        m.int_value = int(value)
    elif datatype == DataType.Int64:
        x = int(value)
        m.long_value = x + (1 << 64) if x < 0 else x
    elif datatype in (DataType.UInt64, DataType.DateTime):
        m.long_value = int(value)
    elif datatype == DataType.Float:
        m.float_value = float(value)
    elif datatype == DataType.Double:
        m.double_value = float(value)
    else:
        m.string_value = str(value)


@dataclass
class _Device:
    id: str
    machine: SparkplugMachine
    model: Model
    metrics: dict[str, tuple[str, int]] = field(default_factory=dict)  # signal -> (metric name, alias)
    types: dict[str, int] = field(default_factory=dict)  # signal -> datatype
    last: dict[str, SignalValue] = field(default_factory=dict)
    alive: bool = True


class EdgeNode:
    """One Sparkplug edge node with its devices on one broker; reconnects by itself after a broker restart.

    Counters for tests: `births` (NBIRTHs published), `rebirth_requests` (NCMD rebirths received), `data_sent`.
    """

    def __init__(self, group: str, edge_node: str, devices: Sequence[SparkplugMachine], *, host: str = "127.0.0.1",
                 port: int = 1883, username: str | None = None, password: str | None = None, seed: int = 1,
                 interval_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.group, self.edge_node = group, edge_node
        self.host, self.port = host, port
        self.interval_s = interval_s
        self._clock = clock
        self.devices: dict[str, _Device] = {}
        alias = 100  # node metrics use 1..99
        for m in devices:
            if m.device is None:
                raise ValueError(f'machine "{m.id}": the simulated edge node serves devices; set device:')
            dev = _Device(m.device, m, model_for(m, seed))
            known = dev.model.signals()
            for signal in m.signals:
                source = MODEL_NAMES.get(signal, signal)
                if source not in known:
                    log.warning("machine %s (%s) has no simulated signal %s; not published", m.id, m.kind, signal)
                    continue
                dev.metrics[signal] = (m.metric_of(signal), alias)
                alias += 1
            self.devices[m.device] = dev
        self.bdseq = 0
        self.seq = -1
        self.births = 0
        self.rebirth_requests = 0
        self.data_sent = 0
        self.answer_rebirth = True  # hook: False holds rebirth requests unanswered (counted all the same)
        self.births_enabled = True  # hook: False publishes no birth (on connect or when asked)
        self.data_without_birth = False  # hook: True sends data although no birth was published
        self._gap = 0
        self._held_back = False  # `overtake`: the next message waits for the one after it
        self._overtaken: tuple[str, bytes, int] | None = None
        self._born = False
        self._boot_ms = int(clock() * 1000)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"spb-{group}-{edge_node}-{random.getrandbits(32):08x}",
                                   protocol=mqtt.MQTTv311, clean_session=True)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._set_will()

    # --- lifetime ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"spb-{self.edge_node}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Publish NDEATH (an intentional disconnect drops the will) and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock, contextlib.suppress(RuntimeError, ValueError):
            if self._client.is_connected():
                info = self._client.publish(node_topic("NDEATH", self.group, self.edge_node), self._ndeath(), qos=1)
                info.wait_for_publish(2.0)
        self._client.disconnect()
        self._client.loop_stop()

    # --- test hooks --------------------------------------------------------------------------------------------

    def skip_seq(self, n: int = 1) -> None:
        """The next message skips `n` sequence numbers, as if messages were lost."""
        with self._lock:
            self._gap += n

    def overtake(self) -> None:
        """The next message is delivered after the one that follows it, as a clustered broker may do with messages
        on different topics (MQTT keeps order per topic only)."""
        with self._lock:
            self._held_back = True

    def device_death(self, device: str) -> None:
        """DDEATH for `device`; it sends nothing until `device_birth`."""
        with self._lock:
            dev = self.devices[device]
            dev.alive = False
            self._publish(device_topic("DDEATH", self.group, self.edge_node, device), self._payload())

    def device_birth(self, device: str) -> None:
        with self._lock:
            dev = self.devices[device]
            dev.alive = True
            self._dbirth(dev)

    def stale_death(self) -> None:
        """An NDEATH with an older bdSeq than the current session's (a late will of a previous connection)."""
        with self._lock:
            self._publish(node_topic("NDEATH", self.group, self.edge_node), self._ndeath(self.bdseq - 1), qos=1)

    def node_death(self) -> None:
        """NDEATH of the current session, then silence until `rebirth` (the connection stays open)."""
        with self._lock:
            self._publish(node_topic("NDEATH", self.group, self.edge_node), self._ndeath(), qos=1)
            self._born = False
            self.births_enabled = False

    def rebirth(self) -> None:
        with self._lock:
            self.births_enabled = True
            self._birth_sequence()

    def unknown_alias(self, device: str) -> None:
        """A DDATA in sequence whose metric carries an alias the DBIRTH never declared."""
        with self._lock:
            p = self._payload()
            p.metrics.add(alias=9999, timestamp=p.timestamp, double_value=1.0)
            self._publish(device_topic("DDATA", self.group, self.edge_node, device), p)

    def publish_raw(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(5.0)

    # --- messages ----------------------------------------------------------------------------------------------

    def _payload(self, *, seq: bool = True) -> Payload:
        p = Payload(timestamp=int(self._clock() * 1000))
        if seq:
            self.seq = (self.seq + 1 + self._gap) % 256
            self._gap = 0
            p.seq = self.seq
        return p

    def _ndeath(self, bdseq: int | None = None) -> bytes:
        p = Payload(timestamp=int(self._clock() * 1000))
        m = p.metrics.add(name=BDSEQ_METRIC, datatype=DataType.Int64)
        m.long_value = self.bdseq if bdseq is None else bdseq % 256
        return p.SerializeToString()

    def _set_will(self) -> None:
        self._client.will_set(node_topic("NDEATH", self.group, self.edge_node), self._ndeath(), qos=1, retain=False)

    def _publish(self, topic: str, p: Payload | bytes, qos: int = 0) -> None:
        data = p if isinstance(p, bytes) else p.SerializeToString()
        if self._held_back:
            self._held_back = False
            self._overtaken = (topic, data, qos)
            return
        self._client.publish(topic, data, qos=qos)
        if self._overtaken is not None:
            held, self._overtaken = self._overtaken, None
            self._client.publish(held[0], held[1], qos=held[2])

    def _birth_sequence(self) -> None:
        """NBIRTH (seq 0) and every live device's DBIRTH."""
        if not self.births_enabled:
            return
        self.seq = -1
        p = self._payload()
        now_ms = p.timestamp
        for name, alias, datatype, value in (
            (BDSEQ_METRIC, 1, DataType.Int64, self.bdseq),
            (REBIRTH_METRIC, 2, DataType.Boolean, False),
            ("Properties/Hardware Make", 3, DataType.String, HARDWARE),
            ("Properties/Boot Time", 4, DataType.DateTime, self._boot_ms),
            ("Properties/Uptime", 5, DataType.UInt64, (now_ms - self._boot_ms) // 1000),
        ):
            m = p.metrics.add(name=name, alias=alias, datatype=datatype, timestamp=now_ms)
            set_value(m, datatype, value)
        self._publish(node_topic("NBIRTH", self.group, self.edge_node), p)
        self.births += 1
        self._born = True
        for dev in self.devices.values():
            if dev.alive:
                self._dbirth(dev)

    def _dbirth(self, dev: _Device) -> None:
        values = self._values(dev)
        p = self._payload()
        for signal, (metric, alias) in dev.metrics.items():
            value = values[signal]
            datatype = dev.types.setdefault(signal, datatype_of(value, dev.machine.signals[signal].unit))
            m = p.metrics.add(name=metric, alias=alias, datatype=datatype, timestamp=p.timestamp)
            set_value(m, datatype, value)
        dev.last = values
        self._publish(device_topic("DBIRTH", self.group, self.edge_node, dev.id), p)

    def _values(self, dev: _Device) -> dict[str, SignalValue]:
        raw = dev.model.step(self._clock())
        return {s: raw[MODEL_NAMES.get(s, s)] for s in dev.metrics}

    def _tick(self) -> None:
        with self._lock:
            if not self._client.is_connected() or not (self._born or self.data_without_birth):
                return
            p = self._payload()
            m = p.metrics.add(alias=5, timestamp=p.timestamp)
            set_value(m, DataType.UInt64, (p.timestamp - self._boot_ms) // 1000)
            self._publish(node_topic("NDATA", self.group, self.edge_node), p)
            for dev in self.devices.values():
                if not dev.alive:
                    continue
                values = self._values(dev)
                changed = {s: v for s, v in values.items() if dev.last.get(s) != v}
                dev.last = values
                if not changed:
                    continue
                p = self._payload()
                for signal, value in changed.items():
                    m = p.metrics.add(alias=dev.metrics[signal][1], timestamp=p.timestamp)
                    set_value(m, dev.types.get(signal, datatype_of(value, None)), value)
                self._publish(device_topic("DDATA", self.group, self.edge_node, dev.id), p)
                self.data_sent += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

    # --- paho callbacks (its network thread) --------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, rc: ReasonCode,
                    _p: object) -> None:
        if rc.is_failure:
            log.warning("broker mqtt://%s:%s refused edge node %s: %s", self.host, self.port, self.edge_node, rc)
            return
        client.subscribe(node_topic("NCMD", self.group, self.edge_node), qos=1)
        with self._lock:
            self._birth_sequence()
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connected.clear()
        with self._lock:
            self._born = False
            self.bdseq = (self.bdseq + 1) % 256  # the next connection's will and birth
            self._set_will()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        p = decode(msg.payload)
        if p is None:
            return
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in p.metrics):
            with self._lock:
                self.rebirth_requests += 1
                if self.answer_rebirth:
                    self._birth_sequence()


class SparkplugSimulator:
    """The virtual-lab part of the Sparkplug driver: one `EdgeNode` per (broker, group, edge node)."""

    def __init__(self, machines: Sequence[SparkplugMachine], env: SimulatorEnv) -> None:
        assert isinstance(env.settings, MqttSection)
        brokers = {b.id: b for b in env.settings.brokers}
        nodes: dict[tuple[str, str, str], list[SparkplugMachine]] = {}
        for m in machines:
            nodes.setdefault((m.broker, m.group, m.edge_node), []).append(m)
        self.nodes: list[EdgeNode] = []
        for (broker_id, group, edge_node), mine in nodes.items():
            b = brokers[broker_id]
            host = "127.0.0.1" if b.host in ("0.0.0.0", "::") else b.host
            interval = min(m.expected_interval_s for m in mine)
            self.nodes.append(EdgeNode(group, edge_node, mine, host=host, port=b.port, username=b.username,
                                       password=b.password, seed=env.seed, interval_s=interval))

    def start(self) -> None:
        for n in self.nodes:
            n.start()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def describe(self) -> list[str]:
        return [f"Sparkplug edge node {n.group}/{n.edge_node} -> mqtt://{n.host}:{n.port} devices "
                + ", ".join(f"{d.id} ({d.machine.id}, {d.machine.kind})" for d in n.devices.values())
                for n in self.nodes]

    def reachable(self, machine: MachineBase) -> MachineBase:
        return machine  # edge nodes publish to the broker; the gateway subscribes there


simulator = SparkplugSimulator
