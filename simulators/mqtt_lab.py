"""Simulated MQTT machines publishing to a real broker, each encoded exactly as its own config describes.

`MqttLab` runs one paho-mqtt client (its own network thread, QoS 1, automatic reconnect) and one publisher
thread that steps every machine's model from `simulators.dynamics` on its interval. Faults for tests: frozen
machines, raw messages and one-shot garbage payloads mixed into a machine's stream.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import random
import re
import threading
import time
import typing
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.mqtt.config import FieldMap, MqttMachine, MqttSection, TimestampMap, TopicMap
from gateway.config.models import MachineBase
from simulators.dynamics import Chamber, EnvSensor, Furnace, LaserCutter, Model, PowerMeter, Printer, SignalValue
from simulators.lab import SimulatorEnv

log = logging.getLogger(__name__)

GarbageKind = Literal["malformed_json", "text_in_number", "nan", "oversized", "invalid_utf8"]
FaultKind = Literal["thermal_runaway"]
FAULT_KINDS: dict[str, str] = {"thermal_runaway": "printer"}
GARBAGE_KINDS: tuple[GarbageKind, ...] = typing.get_args(GarbageKind)
OVERSIZED_BYTES = 512 * 1024
Message = tuple[str, bytes]
JsonValue = Any


def build_models(machine: MqttMachine, seed: int, badges: tuple[str, ...] = ()) -> Model:
    """The model for `machine.kind`, seeded from (seed, machine id), started at some point of its cycle; a laser
    cutter's operators swipe `badges`."""
    pick = random.Random(f"{seed}:{machine.id}")
    model_seed = pick.randrange(2**32)
    if machine.kind == "furnace":
        return Furnace(seed=model_seed, start_offset_s=pick.uniform(0.0, 3 * 3600.0))
    if machine.kind == "chamber":
        return Chamber(seed=model_seed, start_offset_s=pick.uniform(0.0, 2.5 * 3600.0))
    if machine.kind == "env_sensor":
        return EnvSensor(seed=model_seed)
    if machine.kind == "power_meter":
        phase_signal = re.compile(r"(voltage|current)_l[123]_[va]")
        three_phase = any(phase_signal.fullmatch(s) for s in configured_signals(machine))
        return PowerMeter(seed=model_seed, phases=3 if three_phase else 1)
    if machine.kind == "printer":
        return Printer(seed=model_seed, start_progress_pct=pick.uniform(5.0, 80.0))
    if machine.kind == "laser":
        return LaserCutter(seed=model_seed, badges=badges)
    raise ValueError(
        f'machine "{machine.id}": no MQTT simulator for kind "{machine.kind}"; '
        "simulated kinds are furnace, chamber, env_sensor, power_meter, printer, laser"
    )


def configured_signals(machine: MqttMachine) -> list[str]:
    """Signal names the machine's topics name explicitly (json fields, number `signal`s and `units` keys)."""
    names: list[str] = []
    for tm in machine.topics:
        names += [*tm.fields, *tm.units, *([tm.signal] if tm.signal else [])]
    return list(dict.fromkeys(names))


def render_topic(template: str, *, site_id: str, machine_id: str, signal: str | None = None) -> str:
    """Fill {site}, {machine} and (when given) {signal} in a topic template."""
    topic = template.replace("{site}", site_id).replace("{machine}", machine_id)
    return topic if signal is None else topic.replace("{signal}", signal)


def encode(
    machine: MqttMachine, values: Mapping[str, SignalValue], *, site_id: str, t_s: float
) -> list[Message]:
    """All messages one step of `machine` produces, per its topic maps."""
    out: list[Message] = []
    for tm in machine.topics:
        if tm.format == "json":
            if not any(name in values for name in tm.fields):
                continue  # nothing for this topic in this step (a badge reader between swipes)
            topic = render_topic(tm.topic, site_id=site_id, machine_id=machine.id)
            out.append((topic, _dumps(json_payload(tm, values, t_s))))
        else:
            out += [
                (render_topic(tm.topic, site_id=site_id, machine_id=machine.id, signal=name), number_text(v))
                for name, v in _number_signals(tm, values)
            ]
    return out


def json_payload(tm: TopicMap, values: Mapping[str, SignalValue], t_s: float) -> dict[str, JsonValue]:
    """The JSON object of a json topic: each configured signal at its path, scale/offset inverted."""
    obj: dict[str, JsonValue] = {}
    for name, fm in tm.fields.items():
        if name in values:
            set_path(obj, fm.path or name, raw_value(values[name], fm))
    if isinstance(tm.timestamp, TimestampMap):
        set_path(obj, tm.timestamp.path, timestamp_value(t_s, tm.timestamp.format))
    return obj


def raw_value(value: SignalValue, fm: FieldMap) -> JsonValue:
    """What the machine would send so that the gateway's raw * scale + offset gives `value` back."""
    if fm.type == "bool":
        return bool(value)
    if fm.type == "string" or isinstance(value, str):
        return str(value)
    raw = (float(value) - fm.offset) / fm.scale if fm.scale else float(value)
    return round(raw) if fm.type == "int" else round(raw, 9)


def timestamp_value(t_s: float, fmt: str) -> int | float | str:
    """`t_s` (Unix seconds) written in a TimestampMap format."""
    if fmt == "iso8601":
        stamp = dt.datetime.fromtimestamp(t_s, dt.UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")
    if fmt == "unix_s":
        return round(t_s, 3)
    return round(t_s * {"unix_ms": 1e3, "unix_us": 1e6, "unix_ns": 1e9}[fmt])


def set_path(root: dict[str, JsonValue], path: str, value: JsonValue) -> None:
    """Place `value` at a dotted path, creating dicts (or lists for numeric levels such as axes.0.load)."""
    keys = path.split(".")
    node: JsonValue = root
    for key, nxt in itertools.pairwise(keys):
        child = _get(node, key)
        if not isinstance(child, dict | list):
            child = [] if nxt.isdigit() else {}
            _put(node, key, child)
        node = child
    _put(node, keys[-1], value)


def _get(node: JsonValue, key: str) -> JsonValue:
    if isinstance(node, list):
        i = int(key)
        return node[i] if i < len(node) else None
    return node.get(key)


def _put(node: JsonValue, key: str, value: JsonValue) -> None:
    if isinstance(node, list):
        if not key.isdigit():
            raise ValueError(f"path level {key!r} names a key inside a list; use a list index")
        i = int(key)
        node.extend([None] * (i + 1 - len(node)))
        node[i] = value
    else:
        node[key] = value


def number_text(value: SignalValue) -> bytes:
    """Plain-number payload: booleans as 1/0, numbers in their shortest exact form."""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    return str(value).encode()


def _number_signals(tm: TopicMap, values: Mapping[str, SignalValue]) -> list[tuple[str, SignalValue]]:
    if "{signal}" not in tm.topic:
        name = tm.signal or ""
        return [(name, values[name])] if name in values and not isinstance(values[name], str) else []
    names = list(tm.units) or list(values)
    return [(n, values[n]) for n in names if n in values and not isinstance(values[n], str)]


def _dumps(obj: JsonValue) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def garbage(
    kind: GarbageKind, machine: MqttMachine, values: Mapping[str, SignalValue], *, site_id: str, t_s: float
) -> Message:
    """One bad message on one of the machine's own topics (a number topic for number faults if any)."""
    want = "json" if kind in ("malformed_json", "invalid_utf8", "oversized") else "number"
    tm = next((t for t in machine.topics if t.format == want), machine.topics[0])
    if tm.format == "number":
        sig = next(iter(_number_signals(tm, values)), (tm.signal or "value", 0))[0]
        topic = render_topic(tm.topic, site_id=site_id, machine_id=machine.id, signal=sig)
        number_payloads = {
            "malformed_json": b"{12.5",
            "text_in_number": b"n/a",
            "nan": b"NaN",
            "oversized": b"9" * OVERSIZED_BYTES,
            "invalid_utf8": b"\xff\xfe1",
        }
        return topic, number_payloads[kind]
    topic = render_topic(tm.topic, site_id=site_id, machine_id=machine.id)
    obj = json_payload(tm, values, t_s)
    good = _dumps(obj)
    if kind == "malformed_json":
        return topic, good[: max(1, len(good) // 2)]
    if kind == "oversized":
        return topic, _dumps({"padding": "x" * OVERSIZED_BYTES, **obj})
    if kind == "invalid_utf8":
        return topic, good[:-1] + b',"note":"\xff\xfe"}'
    numeric = [n for n, fm in tm.fields.items() if fm.type in ("float", "int")] or list(tm.fields)
    bad: JsonValue = "n/a" if kind == "text_in_number" else float("nan")
    set_path(obj, tm.fields[numeric[0]].path or numeric[0], bad)
    return topic, _dumps(obj)


class MqttLab:
    """Publishes simulated machines to one broker until stopped; reconnects by itself after a broker restart.

    `published[machine_id]` counts that machine's regular messages acknowledged by the broker (PUBACK);
    `garbage_published[machine_id]` the acknowledged bad ones; `raw_published` those of `publish_raw`.
    """

    def __init__(
        self,
        machines: Sequence[MqttMachine],
        *,
        site_id: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        interval_s: float | Mapping[str, float] | None = None,
        seed: int = 1,
        badges: tuple[str, ...] = (),
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.machines = {m.id: m for m in machines}
        if len(self.machines) != len(machines):
            raise ValueError("machine ids must be unique")
        self.site_id, self.host, self.port = site_id, host, port
        self.models = {m.id: build_models(m, seed, badges) for m in machines}
        self.intervals = {m.id: self._interval(m, interval_s) for m in machines}
        self._clock = clock
        for m in machines:
            self._check(m)
        self.published = dict.fromkeys(self.machines, 0)
        self.garbage_published = dict.fromkeys(self.machines, 0)
        self.raw_published = 0
        self._frozen: set[str] = set()
        self._garbage: dict[str, deque[GarbageKind]] = {m: deque() for m in self.machines}
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[str | None, bool]] = {}
        self._acked_early: set[int] = set()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"kartech-sim-{site_id}-{random.getrandbits(32):08x}",
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    @staticmethod
    def _interval(m: MqttMachine, interval_s: float | Mapping[str, float] | None) -> float:
        if interval_s is None:
            return m.expected_interval_s
        if isinstance(interval_s, Mapping):
            return float(interval_s.get(m.id, m.expected_interval_s))
        return float(interval_s)

    def _check(self, m: MqttMachine) -> None:
        for tm in m.topics:
            for name, fm in tm.fields.items():
                if fm.scale == 0:
                    raise ValueError(f'machine "{m.id}": fields.{name}.scale is 0, which cannot be simulated')
        missing = set(configured_signals(m)) - set(self.models[m.id].signals())
        if missing:
            log.warning("machine %s (%s) has no simulated signals %s; they stay unpublished",
                        m.id, m.kind, ", ".join(sorted(missing)))

    # --- lifetime ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start publishing; returns at once."""
        if self._thread is not None:
            raise RuntimeError("MqttLab already started")
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-lab", daemon=True)
        self._thread.start()

    def stop(self, flush_s: float = 1.0) -> None:
        """Stop publishing, wait up to flush_s for outstanding acknowledgements, then disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + flush_s
        while self._pending and self._client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        """True once connected to the broker (False after timeout_s)."""
        return self._connected.wait(timeout_s)

    def __enter__(self) -> MqttLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- fault injection -----------------------------------------------------------------------------------

    def publish_raw(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None:
        """Publish any bytes with QoS 1 and wait for the broker's acknowledgement."""
        if not self._client.is_connected():
            raise ConnectionError(f"not connected to mqtt://{self.host}:{self.port}")
        info = self._client.publish(topic, payload, qos=1)
        self._register(info.mid, None, garbage=False)
        try:
            info.wait_for_publish(timeout_s)
        except RuntimeError as err:
            raise ConnectionError(f"publishing to {topic!r} failed: {err}") from err
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge {topic!r} within {timeout_s} s")

    def freeze(self, machine_id: str) -> None:
        """Stop publishing this machine (its model keeps running) until `resume`."""
        self._known(machine_id)
        self._frozen.add(machine_id)

    def resume(self, machine_id: str) -> None:
        self._known(machine_id)
        self._frozen.discard(machine_id)

    def set_garbage(self, machine_id: str, kind: GarbageKind) -> None:
        """Send one bad message of this kind with the machine's next step."""
        self._known(machine_id)
        if kind not in GARBAGE_KINDS:
            raise ValueError(f"unknown garbage kind {kind!r}; use one of {', '.join(GARBAGE_KINDS)}")
        self._garbage[machine_id].append(kind)

    def inject_fault(self, machine_id: str, fault: FaultKind, after_s: float = 0.0) -> None:
        """Start a fault of the machine's model `after_s` seconds from now (see FAULT_KINDS)."""
        self._known(machine_id)
        model = self.models[machine_id]
        if fault == "thermal_runaway" and isinstance(model, Printer):
            model.inject_thermal_runaway(self._clock() + after_s)
            return
        raise ValueError(f"machine {machine_id!r} ({model.kind}) cannot simulate {fault!r}; "
                         f"faults: {', '.join(f'{k} ({v})' for k, v in FAULT_KINDS.items())}")

    def _known(self, machine_id: str) -> None:
        if machine_id not in self.machines:
            raise KeyError(f"no simulated machine {machine_id!r}; known: {', '.join(self.machines)}")

    # --- publishing ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        due = dict.fromkeys(self.machines, time.monotonic())
        while not self._stop.is_set():
            now = time.monotonic()
            for mid, when in due.items():
                if now >= when:
                    self._tick(mid)
                    step = self.intervals[mid]
                    due[mid] = when + step if when + step > now else now + step
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))

    def _tick(self, machine_id: str) -> None:
        t_s = self._clock()
        values = self.models[machine_id].step(t_s)
        if machine_id in self._frozen or not self._client.is_connected():
            return
        m = self.machines[machine_id]
        queue = self._garbage[machine_id]
        if queue:
            topic, payload = garbage(queue.popleft(), m, values, site_id=self.site_id, t_s=t_s)
            self._publish(machine_id, topic, payload, garbage=True)
        for topic, payload in encode(m, values, site_id=self.site_id, t_s=t_s):
            self._publish(machine_id, topic, payload, garbage=False)

    def _publish(self, machine_id: str, topic: str, payload: bytes, *, garbage: bool) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._register(info.mid, machine_id, garbage=garbage)

    def _register(self, mid: int, machine_id: str | None, *, garbage: bool) -> None:
        """Remember which machine a message id belongs to; count it now if its PUBACK already came."""
        with self._lock:
            if mid in self._acked_early:
                self._acked_early.discard(mid)
                self._count(machine_id, garbage)
            else:
                self._pending[mid] = (machine_id, garbage)

    def _count(self, machine_id: str | None, garbage: bool) -> None:
        if machine_id is None:
            self.raw_published += 1
        elif garbage:
            self.garbage_published[machine_id] += 1
        else:
            self.published[machine_id] += 1

    # --- paho callbacks (network thread) -------------------------------------------------------------------

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: Properties
    ) -> None:
        with self._lock:
            owner = self._pending.pop(mid, None)
            if owner is None:
                self._acked_early.add(mid)
            else:
                self._count(*owner)

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if rc.is_failure:
            log.warning("broker mqtt://%s:%s refused the simulator: %s", self.host, self.port, rc)
            return
        log.info("simulator connected to mqtt://%s:%s", self.host, self.port)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags, rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if self._connected.is_set() and not self._stop.is_set():
            log.warning("simulator lost mqtt://%s:%s (%s); reconnecting", self.host, self.port, rc)
        self._connected.clear()


def describe(lab: MqttLab) -> list[str]:
    """One line per machine: `id (kind) -> mqtt://host:port topic[, topic...]`."""
    return [
        f"{m.id} ({m.kind}) -> mqtt://{lab.host}:{lab.port} "
        + ", ".join(render_topic(tm.topic, site_id=lab.site_id, machine_id=m.id) for tm in m.topics)
        for m in lab.machines.values()
    ]


def planned_faults(config_path: str | Path) -> list[dict[str, Any]]:
    """The `x-simulator-faults:` list of a site file (ignored by the gateway, like every top-level x- key):
    `- {machine: x1c-02, fault: thermal_runaway, after_s: 20}` starts that fault 20 s after the lab starts."""
    import yaml

    data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    faults = data.get("x-simulator-faults") or []
    return [f for f in faults if isinstance(f, dict)]


def apply_faults(labs: Sequence[MqttLab], faults: Sequence[Mapping[str, Any]]) -> list[str]:
    """Schedule planned faults on whichever lab simulates each machine; one line per fault for the log."""
    out: list[str] = []
    for f in faults:
        for lab in labs:
            if f.get("machine") in lab.machines:
                lab.inject_fault(str(f["machine"]), f.get("fault", "thermal_runaway"), float(f.get("after_s", 0)))
                out.append(f"fault {f.get('fault')} on {f['machine']} in {float(f.get('after_s', 0)):g} s")
    return out


class MqttSimulator:
    """The virtual-lab part of the MQTT driver (named by its DRIVER spec): one `MqttLab` per broker, with the
    planned faults of its machines."""

    def __init__(self, machines: Sequence[MqttMachine], env: SimulatorEnv) -> None:
        assert isinstance(env.settings, MqttSection)
        self.faults = env.faults
        self.labs: list[MqttLab] = []
        for broker in env.settings.brokers:
            mine = [m for m in machines if m.broker == broker.id]
            if mine:
                host = "127.0.0.1" if broker.host in ("0.0.0.0", "::") else broker.host
                self.labs.append(MqttLab(mine, site_id=env.site_id, host=host, port=broker.port, seed=env.seed,
                                         badges=env.badges, username=broker.username, password=broker.password))
        self._planned: list[str] = []

    def start(self) -> None:
        for lab in self.labs:
            lab.start()
        self._planned = apply_faults(self.labs, self.faults)

    def stop(self) -> None:
        for lab in self.labs:
            lab.stop()

    def describe(self) -> list[str]:
        return [line for lab in self.labs for line in describe(lab)] + self._planned

    def reachable(self, machine: MachineBase) -> MachineBase:
        return machine  # machines publish to the broker; the gateway subscribes there


simulator = MqttSimulator
