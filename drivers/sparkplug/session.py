"""The Sparkplug Host Application's view of its edge nodes: births, aliases, sequence numbers, deaths. No I/O.

`HostSession.handle(topic, data, receive_ns)` takes one MQTT message and says what follows from it: readings,
rebirth requests to send, machines that came online or went offline, and whether the gateway must publish its
STATE again. What cannot be used is counted through `bad` (the driver's `ctx.bad_input`).

The rules (Sparkplug 3.0, chapters 5 and 6):
- NBIRTH starts an edge node's session: its seq, its bdSeq, and the names, aliases and datatypes of its metrics;
  every device birth before it is forgotten (the DBIRTHs follow). DBIRTH does the same for a device.
- Every message of a node after its NBIRTH carries the next seq (0..255, then 0 again), across the node and all its
  devices. These messages travel on different topics, and MQTT orders messages per topic only: a clustered or
  multi-threaded broker (EMQX, HiveMQ, NanoMQ) may deliver them out of order. So a message whose seq is not the
  next one, or that comes before its node's NBIRTH, is held for the node's reorder timeout (chapter 5, "Host
  Application Message Ordering"; `reorder_timeout_s`, 0 turns it off). When the missing messages arrive, the held
  ones follow them in seq order and nothing else happens. When the timeout passes first, one rebirth request is
  sent, and the held messages are used in seq order when their aliases are known (a gap in a session) or not used
  when they are not (no NBIRTH came: their aliases mean nothing).
- A message held across an NBIRTH belongs to the new session only when it is not older than the birth (its
  payload timestamp); an older one is from the session before and is dropped.
- DBIRTH, NDATA, DDATA or DDEATH of a node (or DDATA of a device) without a birth in this session, once the reorder
  timeout has passed: the data is not used (its aliases mean nothing yet) and one rebirth request is sent.
- A rebirth request is sent once per node until its NBIRTH arrives; only if none came after `rebirth_retry_s` is
  it sent again (a lost request, or a node that was busy).
- NDEATH ends the node's session only when its bdSeq is the one of the current NBIRTH (a will message from an older
  connection arriving late is ignored); the node and all its devices go offline. DDEATH takes one device offline.
- An NBIRTH with the bdSeq of the NDEATH just before it, arriving within the reorder timeout of that death, is a
  rebirth that was on its way when the node died (the will overtook it): it does not bring the node back. A rebirth
  is requested once that window has passed, so a node that restarted with the same bdSeq is not left offline.
- A STATE message on the gateway's own host id that says `online: false` (its will, delivered by a broker that
  thinks the gateway is gone, or anyone else's) is answered by publishing STATE online again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from drivers.sparkplug.config import MetricMap, SparkplugMachine
from drivers.sparkplug.payload import (
    NATURAL_KIND,
    MetricValue,
    Topic,
    Unsupported,
    bdseq,
    decode,
    metric_value,
)
from drivers.sparkplug.sparkplug_b_pb2 import DataType, Payload
from gateway.reading import Quality, Reading
from gateway.signals import BadInput, BadValue, Deadband, convert

log = logging.getLogger(__name__)

NodeKey = tuple[str, str]  # (group, edge node)
DeviceKey = tuple[str, str, str | None]  # (group, edge node, device or None for the node itself)
REBIRTH_RETRY_S = 30.0
MAX_HELD = 255  # messages held per node: a seq space (256) less the one awaited


@dataclass(frozen=True, slots=True)
class _Plan:
    machine: str
    signal: str
    settings: MetricMap
    deadband: Deadband | None


@dataclass(slots=True)
class _Births:
    """What one NBIRTH or DBIRTH declared: metric name by alias, datatype by name."""

    names: dict[int, str] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)


class _Held(NamedTuple):
    """A message that came before the ones it follows, waiting for them (at most the reorder timeout)."""

    topic: str
    t: Topic
    payload: Payload
    receive_ns: int


@dataclass(slots=True)
class _Node:
    reorder_s: float = 0.0
    seq: int | None = None  # None: no NBIRTH in this session
    bdseq: int | None = None
    births: _Births = field(default_factory=_Births)
    devices: dict[str, _Births] = field(default_factory=dict)
    rebirth_at: float | None = None  # when a rebirth was last requested; None once a birth answered it
    held: dict[int, _Held] = field(default_factory=dict)  # by seq
    held_since: float | None = None  # the reorder timer: when the awaited message started to be missing
    died: tuple[int, float] | None = None  # bdSeq and time of the last NDEATH that ended a session
    rebirth_due: float | None = None  # a rebirth request to send at this time (after a late NBIRTH was dropped)


@dataclass(slots=True)
class Outcome:
    readings: list[Reading] = field(default_factory=list)
    rebirths: list[NodeKey] = field(default_factory=list)
    online: list[str] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    offline_reason: str = ""
    republish_state: bool = False


class HostSession:
    """Every tracked edge node's Sparkplug session as the host sees it; `reset()` on every new MQTT connection."""

    def __init__(self, machines: Sequence[SparkplugMachine], host_id: str, bad: BadInput, *,
                 clock: Callable[[], float], rebirth_retry_s: float = REBIRTH_RETRY_S,
                 reorder_s: float | None = None) -> None:
        """`reorder_s`: the reorder timeout of every node; None: each node's from its machines' settings."""
        self.host_id = host_id
        self.bad = bad
        self.clock = clock
        self.rebirth_retry_s = rebirth_retry_s
        self.machines: dict[DeviceKey, list[str]] = {}
        self.plans: dict[DeviceKey, dict[str, list[_Plan]]] = {}
        for m in machines:
            key = (m.group, m.edge_node, m.device)
            self.machines.setdefault(key, []).append(m.id)
            by_metric = self.plans.setdefault(key, {})
            for name, s in m.signals.items():
                deadband = None if s.deadband is None else Deadband(s.deadband, int(m.expected_interval_s * 1e9))
                by_metric.setdefault(m.metric_of(name), []).append(_Plan(m.id, name, s, deadband))
        self.node_machines: dict[NodeKey, list[str]] = {}
        for (g, n, _d), ids in self.machines.items():
            self.node_machines.setdefault((g, n), []).extend(ids)
        self.reorder: dict[NodeKey, float] = {}
        for m in machines:  # a node's machines may disagree: the longest wait wins
            node_key = (m.group, m.edge_node)
            value = m.reorder_timeout_s if reorder_s is None else reorder_s
            self.reorder[node_key] = max(self.reorder.get(node_key, 0.0), value)
        self.nodes: dict[NodeKey, _Node] = {}
        self.reset()

    def groups(self) -> list[str]:
        return list(dict.fromkeys(g for g, _n in self.node_machines))

    def reset(self) -> None:
        """A new MQTT session: nothing is known of any edge node until its next birth."""
        self.nodes = {key: _Node(self.reorder[key]) for key in self.node_machines}

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (a reorder timeout, a delayed rebirth request), on `clock`."""
        times = [n.held_since + n.reorder_s for n in self.nodes.values() if n.held_since is not None]
        times += [n.rebirth_due for n in self.nodes.values() if n.rebirth_due is not None]
        return min(times, default=None)

    def tick(self) -> Outcome:
        """What follows from time passing: reorder timeouts that ran out, delayed rebirth requests."""
        out = Outcome()
        now = self.clock()
        for key, node in self.nodes.items():
            if node.held_since is not None and now - node.held_since >= node.reorder_s:
                self._give_up_waiting(key, node, out)
            if node.rebirth_due is not None and now >= node.rebirth_due:
                node.rebirth_due = node.rebirth_at = None
                self._rebirth(key, node, out)
        return out

    def handle(self, topic: str, data: bytes | bytearray, receive_ns: int) -> Outcome:
        out = Outcome()
        t = Topic.parse(topic)
        if t is None:
            self.bad("bad_topic", None, f"{topic!r} is not spBv1.0/<group>/<verb>/<edge node>[/<device>]")
            return out
        if t.verb == "STATE":
            self._state(t, data, out)
            return out
        if t.verb in ("NCMD", "DCMD"):
            return out  # commands of other host applications (and our own rebirth requests)
        key = (t.group, t.edge_node)
        node = self.nodes.get(key)
        if node is None:
            return out  # an edge node of a subscribed group that no machine reads
        machine = self._some_machine(t)
        payload = decode(data)
        if payload is None:
            self.bad("malformed_protobuf", machine, f"{topic}: {len(data)} bytes are not a Sparkplug B payload")
            return out
        if t.verb == "NBIRTH":
            if self._nbirth(key, node, payload, topic, receive_ns, out):
                self._release(key, node, out, birth_ms=payload.timestamp if payload.HasField("timestamp") else None)
        elif t.verb == "NDEATH":
            self._ndeath(key, node, payload, topic, out)
        elif not payload.HasField("seq") or payload.seq > 255:
            self.bad("bad_seq", machine, f"{topic}: {t.verb} without a seq of 0..255; not used")
            self._rebirth(key, node, out)
        else:
            self._data(key, node, t, payload, topic, machine, receive_ns, out)
        return out

    def _data(self, key: NodeKey, node: _Node, t: Topic, p: Payload, topic: str, machine: str | None,
              receive_ns: int, out: Outcome) -> None:
        """A message with a seq: used if it is the next one, else held for the reorder timeout (or, without one,
        used at once as a gap, or not used before the birth)."""
        if node.seq is not None and p.seq == (node.seq + 1) % 256:
            node.held.pop(p.seq, None)  # a message of the session before with this seq: it is too late
            self._in_session(key, node, t, p, topic, machine, receive_ns, out)
            self._release(key, node, out)
        elif node.reorder_s > 0:
            if p.seq in node.held or len(node.held) >= MAX_HELD:  # the seq space wrapped while waiting
                self._give_up_waiting(key, node, out)  # what waits is used now; nothing is overwritten
                self._data(key, node, t, p, topic, machine, receive_ns, out)  # nothing is held any more
                return
            node.held[p.seq] = _Held(topic, t, p, receive_ns)
            if node.held_since is None:
                node.held_since = self.clock()
        elif node.seq is None:
            self.bad("before_birth", machine, f"{topic}: {t.verb} before the edge node's NBIRTH; not used")
            self._rebirth(key, node, out)
        else:
            self._gap(key, node, p.seq, topic, machine, out)
            self._in_session(key, node, t, p, topic, machine, receive_ns, out)

    # --- messages ----------------------------------------------------------------------------------------------

    def _nbirth(self, key: NodeKey, node: _Node, p: Payload, topic: str, receive_ns: int, out: Outcome) -> bool:
        """A new session of the node, unless the birth is not usable (then False)."""
        if not p.HasField("seq") or p.seq > 255:
            self.bad("bad_seq", self._node_machine(key), f"{topic}: NBIRTH without a seq of 0..255; not used")
            self._rebirth(key, node, out)
            return False
        bd = bdseq(p)
        if node.seq is None and node.died is not None and bd == node.died[0] \
                and self.clock() - node.died[1] < node.reorder_s:
            self.bad("late_birth", self._node_machine(key), f"{topic}: NBIRTH of bdSeq {bd} after its NDEATH (a "
                     "rebirth the death overtook); not used, a rebirth will be requested")
            node.rebirth_due = node.died[1] + node.reorder_s
            return False
        if bd is None:
            self.bad("missing_bdseq", self._node_machine(key), f"{topic}: NBIRTH without its bdSeq metric; an "
                     "NDEATH cannot be matched to it")
        node.seq, node.bdseq, node.rebirth_at, node.died, node.rebirth_due = p.seq, bd, None, None, None
        node.births = self._births(p, (*key, None), topic)
        node.devices = {}
        out.readings += self._readings((*key, None), node.births, p, topic, receive_ns, node, out)
        out.online += self.machines.get((*key, None), [])
        return True

    def _ndeath(self, key: NodeKey, node: _Node, p: Payload, topic: str, out: Outcome) -> None:
        bd = bdseq(p)
        if node.seq is None or bd is None or bd != node.bdseq:
            log.debug("%s: NDEATH bdSeq=%s does not end the current session (bdSeq=%s); ignored", topic, bd,
                      node.bdseq)
            return
        node.seq, node.devices, node.died = None, {}, (bd, self.clock())
        out.offline += self.node_machines[key]
        out.offline_reason = (f"Sparkplug edge node {key[0]}/{key[1]} died (NDEATH, bdSeq {bd}); its machines are "
                              "offline until its next birth (NBIRTH)")

    def _release(self, key: NodeKey, node: _Node, out: Outcome, birth_ms: int | None = None) -> None:
        """The held messages that now follow in seq order are used; the reorder timer restarts for the rest."""
        if birth_ms is not None:  # a new session: what is older than its birth belongs to the session before
            stale = [s for s, h in node.held.items() if h.payload.HasField("timestamp") and h.payload.timestamp
                     < birth_ms]
            for s in stale:
                del node.held[s]
        while node.seq is not None and (h := node.held.pop((node.seq + 1) % 256, None)) is not None:
            self._in_session(key, node, h.t, h.payload, h.topic, self._some_machine(h.t), h.receive_ns, out)
        node.held_since = self.clock() if node.held else None  # progress: the wait for the next gap starts now

    def _give_up_waiting(self, key: NodeKey, node: _Node, out: Outcome) -> None:
        """The reorder timeout ran out: one rebirth request; the held messages are used if their aliases are known."""
        held = node.held
        node.held, node.held_since = {}, None
        if node.seq is None:
            for h in held.values():
                self.bad("before_birth", self._some_machine(h.t), f"{h.topic}: {h.t.verb} before the edge node's "
                         f"NBIRTH (waited {node.reorder_s:g} s); not used")
            self._rebirth(key, node, out)
            return
        start = (node.seq + 1) % 256
        first = True
        for s in sorted(held, key=lambda s: (s - start) % 256):
            h = held[s]
            if first:
                self._gap(key, node, s, h.topic, self._some_machine(h.t), out)
                first = False
            self._in_session(key, node, h.t, h.payload, h.topic, self._some_machine(h.t), h.receive_ns, out)

    def _gap(self, key: NodeKey, node: _Node, seq: int, topic: str, machine: str | None, out: Outcome) -> None:
        assert node.seq is not None
        waited = f" within {node.reorder_s:g} s" if node.reorder_s > 0 else ""
        self.bad("sequence_gap", machine, f"{topic}: seq {seq}, expected {(node.seq + 1) % 256}, which did not "
                 f"come{waited}; rebirth requested")
        self._rebirth(key, node, out)

    def _in_session(self, key: NodeKey, node: _Node, t: Topic, p: Payload, topic: str, machine: str | None,
                    receive_ns: int, out: Outcome) -> None:
        """Use one message of the node's session (its seq checked by the caller)."""
        assert node.seq is not None
        node.seq = p.seq
        dkey: DeviceKey = (t.group, t.edge_node, t.device)
        if t.verb == "DBIRTH":
            assert t.device is not None
            node.devices[t.device] = births = self._births(p, dkey, topic)
            out.readings += self._readings(dkey, births, p, topic, receive_ns, node, out)
            out.online += self.machines.get(dkey, [])
        elif t.verb == "DDEATH":
            assert t.device is not None
            node.devices.pop(t.device, None)
            out.offline += self.machines.get(dkey, [])
            out.offline_reason = (f"Sparkplug device {t.group}/{t.edge_node}/{t.device} died (DDEATH); offline until "
                                  "its next birth (DBIRTH)")
        elif t.verb == "NDATA":
            out.readings += self._readings(dkey, node.births, p, topic, receive_ns, node, out)
        else:  # DDATA
            assert t.device is not None
            device = node.devices.get(t.device)
            if device is None:
                self.bad("before_birth", machine, f"{topic}: DDATA before the device's DBIRTH; not used")
                self._rebirth(key, node, out)
                return
            out.readings += self._readings(dkey, device, p, topic, receive_ns, node, out)

    def _state(self, t: Topic, data: bytes | bytearray, out: Outcome) -> None:
        if t.host_id != self.host_id:
            return
        try:
            doc = json.loads(data)
        except ValueError:
            self.bad("malformed_state", None, f"STATE of host {t.host_id}: not JSON")
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("online"), bool):
            self.bad("malformed_state", None, f"STATE of host {t.host_id}: no boolean 'online'")
            return
        if doc["online"] is False:
            out.republish_state = True

    # --- helpers -----------------------------------------------------------------------------------------------

    def _rebirth(self, key: NodeKey, node: _Node, out: Outcome) -> None:
        now = self.clock()
        if node.rebirth_at is not None and now - node.rebirth_at < self.rebirth_retry_s:
            return  # asked already; the NBIRTH is on its way
        node.rebirth_at = now
        out.rebirths.append(key)

    def _births(self, p: Payload, dkey: DeviceKey, topic: str) -> _Births:
        b = _Births()
        for m in p.metrics:
            if not m.name:
                continue  # a birth declares every metric by name
            b.types[m.name] = m.datatype
            if m.HasField("alias"):
                b.names[m.alias] = m.name
        for metric, plans in self.plans.get(dkey, {}).items():
            if metric not in b.types:
                self.bad("unknown_metric", plans[0].machine, f"{topic}: the birth declares no metric {metric!r} "
                         f"(signal {plans[0].signal}); it stays without values")
        return b

    def _readings(self, dkey: DeviceKey, births: _Births, p: Payload, topic: str, receive_ns: int, node: _Node,
                  out: Outcome) -> list[Reading]:
        plans = self.plans.get(dkey)
        if not plans:
            return []
        payload_ns = p.timestamp * 1_000_000 if p.HasField("timestamp") else receive_ns
        readings: list[Reading] = []
        for m in p.metrics:
            if m.name:
                name = m.name
            elif m.HasField("alias") and m.alias in births.names:
                name = births.names[m.alias]
            else:
                machine = self.machines[dkey][0]
                self.bad("unknown_alias", machine, f"{topic}: alias {m.alias} is not in the birth certificate")
                self._rebirth((dkey[0], dkey[1]), node, out)
                continue
            targets = plans.get(name)
            if not targets:
                continue
            datatype = m.datatype if m.HasField("datatype") else births.types.get(name, DataType.Unknown)
            ts = m.timestamp * 1_000_000 if m.HasField("timestamp") else payload_ns
            try:
                value = metric_value(m, datatype)
            except Unsupported as err:
                self.bad("unsupported_type", targets[0].machine, f"{topic}: {name}: {err}")
                continue
            except ValueError as err:
                self.bad("wrong_type", targets[0].machine, f"{topic}: {name}: {err}")
                continue
            for plan in targets:
                r = self._reading(plan, value, ts, receive_ns, topic, name)
                if r is not None and (plan.deadband is None or plan.deadband.passes(r)):
                    readings.append(r)
        return readings

    def _reading(self, plan: _Plan, value: MetricValue, ts: int, receive_ns: int, topic: str,
                 name: str) -> Reading | None:
        s = plan.settings
        if value.raw is None:  # is_null: the edge node says there is no value now
            return Reading(plan.machine, plan.signal, None, s.unit, Quality.BAD, ts, receive_ns)
        kind = NATURAL_KIND[value.datatype] if s.type == "auto" else s.type
        raw = value.ms if value.ms is not None and kind in ("int", "float") else value.raw
        x = convert(raw, s, kind)
        if isinstance(x, BadValue):
            self.bad(x.reason, plan.machine, f"{topic}: {name}={str(raw)[:40]!r}")
            return None
        return Reading(plan.machine, plan.signal, x, s.unit, Quality.GOOD, ts, receive_ns)

    def _some_machine(self, t: Topic) -> str | None:
        ids = self.machines.get((t.group, t.edge_node, t.device))
        return ids[0] if ids else self._node_machine((t.group, t.edge_node))

    def _node_machine(self, key: NodeKey) -> str | None:
        ids = self.node_machines.get(key)
        return ids[0] if ids else None
