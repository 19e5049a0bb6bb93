"""The host application's session logic: births and aliases, seq and rebirth requests, deaths by bdSeq, STATE."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.sparkplug.config import SparkplugMachine
from drivers.sparkplug.session import HostSession, Outcome
from drivers.sparkplug.sparkplug_b_pb2 import DataType, Payload
from gateway.reading import Quality

G, N = "Kartech", "edge-1"
NODE = f"spBv1.0/{G}/%s/{N}"
DEV = f"spBv1.0/{G}/%s/{N}/%s"


def machine(mid: str, device: str | None, signals: dict[str, Any], edge_node: str = N) -> SparkplugMachine:
    return SparkplugMachine.model_validate({"id": mid, "name": mid, "kind": "cnc", "driver": "sparkplug",
                                            "broker": "lab", "group": G, "edge_node": edge_node, "device": device,
                                            "signals": signals})


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Host:
    def __init__(self, machines: list[SparkplugMachine] | None = None, reorder_s: float = 0.0) -> None:
        self.bad: list[tuple[str, str | None, str]] = []
        self.clock = Clock()
        self.session = HostSession(machines or [
            machine("cnc-01", "cnc", {"speed": {"metric": "Spindle/Speed", "unit": "rpm"},
                                      "program": {"metric": "Program"}, "parts": {"metric": "Parts"},
                                      "alarm": {"metric": "Alarm"}, "door": {"metric": "Door"},
                                      "serviced": {"metric": "Serviced"},
                                      "serviced_ms": {"metric": "Serviced", "type": "int"}}),
            machine("furnace-01", "furnace", {"temperature": {"metric": "Temperature", "unit": "degC"}}),
            machine("node-01", None, {"uptime": {"metric": "Properties/Uptime", "unit": "s"}}),
        ], "kartech-gw", lambda r, m, d: self.bad.append((r, m, d)), clock=self.clock, reorder_s=reorder_s)
        self.seq = -1

    def send(self, topic: str, p: Payload | bytes, *, seq: int | None = None, next_seq: bool = True) -> Outcome:
        if isinstance(p, Payload) and next_seq:
            self.seq = (self.seq + 1) % 256 if seq is None else seq
            p.seq = self.seq
        return self.session.handle(topic, p if isinstance(p, bytes) else p.SerializeToString(), 5_000_000_000)

    def reasons(self) -> list[str]:
        return [r for r, _m, _d in self.bad]

    def nbirth(self, bdseq: int = 0, timestamp: int = 1_000) -> Outcome:
        self.seq = -1
        return self.send(NODE % "NBIRTH", Payload(timestamp=timestamp, metrics=[
            Payload.Metric(name="bdSeq", alias=1, datatype=DataType.Int64, long_value=bdseq),
            Payload.Metric(name="Node Control/Rebirth", alias=2, datatype=DataType.Boolean, boolean_value=False),
            Payload.Metric(name="Properties/Uptime", alias=3, datatype=DataType.UInt64, long_value=12),
        ]))

    def dbirth_cnc(self) -> Outcome:
        return self.send(DEV % ("DBIRTH", "cnc"), Payload(timestamp=2_000, metrics=[
            Payload.Metric(name="Spindle/Speed", alias=10, datatype=DataType.Float, float_value=1200.5),
            Payload.Metric(name="Program", alias=11, datatype=DataType.String, string_value="O1001.NC"),
            Payload.Metric(name="Parts", alias=12, datatype=DataType.UInt32, int_value=7),
            Payload.Metric(name="Alarm", alias=13, datatype=DataType.Int16, int_value=2**16 - 1),
            Payload.Metric(name="Door", alias=14, datatype=DataType.Boolean, boolean_value=True),
            Payload.Metric(name="Serviced", alias=15, datatype=DataType.DateTime, long_value=1_700_000_000_000),
        ]))

    def dbirth_furnace(self) -> Outcome:
        return self.send(DEV % ("DBIRTH", "furnace"), Payload(timestamp=2_000, metrics=[
            Payload.Metric(name="Temperature", alias=20, datatype=DataType.Double, double_value=25.0)]))

    def ddata(self, device: str = "cnc", alias: int = 10, value: float = 1500.0, **kw: Any) -> Outcome:
        return self.send(DEV % ("DDATA", device), Payload(timestamp=3_000, metrics=[
            Payload.Metric(alias=alias, timestamp=3_500, float_value=value)]), **kw)

    def ndeath(self, bdseq: int) -> Outcome:
        p = Payload(metrics=[Payload.Metric(name="bdSeq", datatype=DataType.Int64, long_value=bdseq)])
        return self.send(NODE % "NDEATH", p, next_seq=False)

    def born(self) -> Host:
        self.nbirth()
        self.dbirth_cnc()
        self.dbirth_furnace()
        return self


def values(out: Outcome) -> dict[tuple[str, str], object]:
    return {(r.machine, r.signal): r.value for r in out.readings}


def test_births_declare_typed_values_and_bring_machines_online() -> None:
    h = Host()
    out = h.nbirth()
    assert values(out) == {("node-01", "uptime"): 12}
    assert out.online == ["node-01"]
    out = h.dbirth_cnc()
    assert values(out) == {("cnc-01", "speed"): 1200.5, ("cnc-01", "program"): "O1001.NC", ("cnc-01", "parts"): 7,
                           ("cnc-01", "alarm"): -1, ("cnc-01", "door"): True,
                           ("cnc-01", "serviced"): "2023-11-14T22:13:20.000Z",
                           ("cnc-01", "serviced_ms"): 1_700_000_000_000}
    assert [type(v) for v in values(out).values()] == [float, str, int, int, bool, str, int]
    assert out.online == ["cnc-01"]
    assert {r.unit for r in out.readings if r.signal == "speed"} == {"rpm"}
    assert {r.source_ns for r in out.readings} == {2_000_000_000}  # the payload's timestamp when a metric has none
    assert h.bad == []


def test_data_by_alias_after_the_birth() -> None:
    h = Host().born()
    out = h.ddata(value=1500.25)
    assert values(out) == {("cnc-01", "speed"): 1500.25}
    assert out.readings[0].source_ns == 3_500_000_000  # the metric's own timestamp
    out = h.ddata("furnace", alias=20, value=512.0)
    assert values(out) == {("furnace-01", "temperature"): 512.0}
    out = h.send(NODE % "NDATA", Payload(metrics=[Payload.Metric(alias=3, long_value=13)]))
    assert values(out) == {("node-01", "uptime"): 13}
    assert h.bad == []
    assert out.rebirths == []


def test_a_sequence_gap_asks_for_exactly_one_rebirth_and_keeps_the_data() -> None:
    h = Host().born()
    h.ddata()
    out = h.ddata(seq=h.seq + 2)  # one message lost
    assert out.rebirths == [(G, N)]
    assert values(out) == {("cnc-01", "speed"): 1500.0}
    assert h.reasons() == ["sequence_gap"]
    later = [h.ddata(seq=h.seq + 2).rebirths for _ in range(3)]  # more gaps before the birth: asked already
    assert later == [[], [], []]
    h.nbirth(0)
    out = h.ddata(seq=h.seq + 2)  # a gap in the new session is a new reason to ask
    assert out.rebirths == [(G, N)]


def test_seq_wraps_from_255_to_0() -> None:
    h = Host().born()
    while h.seq != 255:
        h.ddata()
    out = h.ddata()  # 0 follows 255
    assert h.seq == 0
    assert out.rebirths == []
    assert h.bad == []
    assert values(out) == {("cnc-01", "speed"): 1500.0}
    assert h.ddata(seq=2).rebirths == [(G, N)]  # 1 is missing


def test_data_before_the_birth_is_not_used_and_asks_once() -> None:
    h = Host()
    outs = [h.ddata() for _ in range(4)]
    assert [o.readings for o in outs] == [[], [], [], []]
    assert [o.rebirths for o in outs] == [[(G, N)], [], [], []]
    assert h.reasons() == ["before_birth"] * 4
    h.clock.t += 29.0
    assert h.ddata().rebirths == []
    h.clock.t += 1.0  # no birth came within rebirth_retry_s: the request may have been lost, ask again
    assert h.ddata().rebirths == [(G, N)]
    h.born()
    assert values(h.ddata()) == {("cnc-01", "speed"): 1500.0}


def test_device_data_before_its_dbirth_is_not_used() -> None:
    h = Host()
    h.nbirth()
    out = h.ddata()
    assert out.readings == []
    assert out.rebirths == [(G, N)]
    assert h.reasons() == ["before_birth"]


def test_a_dbirth_before_the_nbirth_asks_for_a_rebirth() -> None:
    h = Host()
    out = h.dbirth_cnc()
    assert (out.readings, out.online, out.rebirths) == ([], [], [(G, N)])


def test_an_nbirth_forgets_the_device_births() -> None:
    h = Host().born()
    h.nbirth(1)
    assert h.ddata().readings == []  # the DBIRTHs of the new session come next
    assert h.reasons() == ["before_birth"]


def test_ndeath_with_the_births_bdseq_takes_the_node_and_its_devices_offline() -> None:
    h = Host()
    h.nbirth(bdseq=7)
    h.dbirth_cnc()
    h.dbirth_furnace()
    stale = h.ndeath(6)  # the will of an older connection, delivered late
    assert (stale.offline, stale.readings) == ([], [])
    assert values(h.ddata()) == {("cnc-01", "speed"): 1500.0}  # still in session
    out = h.ndeath(7)
    assert sorted(out.offline) == ["cnc-01", "furnace-01", "node-01"]
    assert "edge-1 died (NDEATH, bdSeq 7)" in out.offline_reason
    assert h.ddata().readings == []  # dead: data means nothing until the next birth
    assert h.ndeath(7).offline == []  # a repeated death changes nothing


def test_ddeath_takes_one_device_offline() -> None:
    h = Host().born()
    out = h.send(DEV % ("DDEATH", "furnace"), Payload(timestamp=4_000))
    assert out.offline == ["furnace-01"]
    assert "furnace died (DDEATH)" in out.offline_reason
    assert h.ddata("furnace", alias=20).readings == []
    assert values(h.ddata()) == {("cnc-01", "speed"): 1500.0}


def test_unknown_alias_is_bad_input_and_asks_for_a_rebirth() -> None:
    h = Host().born()
    out = h.ddata(alias=99)
    assert (out.readings, out.rebirths) == ([], [(G, N)])
    assert h.reasons() == ["unknown_alias"]


def test_malformed_messages_are_counted() -> None:
    h = Host().born()
    h.session.handle(DEV % ("DDATA", "cnc"), b"\xff\xfe not protobuf", 1)
    h.session.handle("spBv1.0/Kartech/DDATA", b"", 1)
    h.session.handle("lab/kartech/x", b"", 1)
    assert h.reasons() == ["malformed_protobuf", "bad_topic", "bad_topic"]


def test_wrong_value_types_are_counted_never_guessed() -> None:
    h = Host([machine("m", "cnc", {"program": {"metric": "Program", "type": "float"},
                                  "door": {"metric": "Door", "type": "bool"}})])
    h.nbirth()
    out = h.send(DEV % ("DBIRTH", "cnc"), Payload(metrics=[
        Payload.Metric(name="Program", alias=1, datatype=DataType.String, string_value="O1001.NC"),
        Payload.Metric(name="Door", alias=2, datatype=DataType.Boolean, boolean_value=True),
        Payload.Metric(name="Blob", alias=3, datatype=DataType.Bytes, bytes_value=b"\x00"),
    ]))
    assert values(out) == {("m", "door"): True}
    assert h.reasons() == ["not_a_number"]
    h.send(DEV % ("DDATA", "cnc"), Payload(metrics=[Payload.Metric(alias=2, string_value="yes")]))
    assert h.reasons()[-1] == "wrong_type"


def test_null_metric_is_a_bad_reading_without_value() -> None:
    h = Host().born()
    out = h.send(DEV % ("DDATA", "cnc"), Payload(metrics=[Payload.Metric(alias=10, is_null=True)]))
    assert [(r.signal, r.value, r.quality) for r in out.readings] == [("speed", None, Quality.BAD)]


def test_a_configured_metric_missing_from_the_birth_is_reported() -> None:
    h = Host([machine("m", "cnc", {"speed": {"metric": "Spindle/Speed"}, "feed": {"metric": "Feed"}})])
    h.nbirth()
    h.dbirth_cnc()
    assert h.bad == [("unknown_metric", "m", f"{DEV % ('DBIRTH', 'cnc')}: the birth declares no metric 'Feed' "
                      "(signal feed); it stays without values")]


def test_other_edge_nodes_and_commands_are_ignored() -> None:
    h = Host()
    out = h.session.handle(f"spBv1.0/{G}/DDATA/someone-else/x", b"\xff", 1)
    assert (out.readings, out.rebirths, h.bad) == ([], [], [])
    assert h.session.handle(NODE % "NCMD", b"\xff", 1).rebirths == []


def test_reset_forgets_every_session() -> None:
    h = Host().born()
    h.session.reset()
    out = h.ddata()
    assert (out.readings, out.rebirths) == ([], [(G, N)])


@pytest.mark.parametrize(("host", "payload", "republish", "bad"), [
    ("kartech-gw", b'{"online":false,"timestamp":1}', True, []),
    ("kartech-gw", b'{"online":true,"timestamp":1}', False, []),
    ("other-host", b'{"online":false,"timestamp":1}', False, []),
    ("kartech-gw", b"offline", False, ["malformed_state"]),
    ("kartech-gw", b'{"timestamp":1}', False, ["malformed_state"]),
])
def test_own_state_offline_is_answered(host: str, payload: bytes, republish: bool, bad: list[str]) -> None:
    h = Host()
    out = h.session.handle(f"spBv1.0/STATE/{host}", payload, 1)
    assert out.republish_state is republish
    assert h.reasons() == bad


def test_groups_to_subscribe() -> None:
    h = Host([machine("a", "x", {"s": {}}), machine("b", None, {"s": {}}, edge_node="other")])
    assert h.session.groups() == [G]


# --- the reorder timeout (Sparkplug 3.0, 5.x "Host Application Message Ordering") ----------------------------------

def test_messages_out_of_order_within_the_reorder_timeout_are_used_in_seq_order() -> None:
    h = Host(reorder_s=2.0).born()
    first = h.seq + 1
    early = h.ddata(seq=first + 1, value=2.0)  # overtook the one before it (another topic, a clustered broker)
    assert (early.readings, early.rebirths) == ([], [])
    h.clock.t += 1.5
    late = h.ddata(seq=first, value=1.0)
    assert [r.value for r in late.readings] == [1.0, 2.0]  # in seq order
    assert (late.rebirths, h.bad) == ([], [])
    h.seq = first + 1
    h.clock.t += 10
    assert h.session.tick().rebirths == []  # nothing is waiting any more
    assert values(h.ddata(value=3.0)) == {("cnc-01", "speed"): 3.0}


def test_a_gap_that_outlasts_the_reorder_timeout_asks_once_and_keeps_the_data() -> None:
    h = Host(reorder_s=2.0).born()
    lost = h.seq + 1
    h.ddata(seq=lost + 1, value=2.0)
    h.ddata(seq=lost + 2, value=3.0)
    assert h.session.next_deadline() == h.clock.t + 2.0
    h.clock.t += 1.9
    assert h.session.tick().rebirths == []
    h.clock.t += 0.1
    out = h.session.tick()
    assert out.rebirths == [(G, N)]
    assert [r.value for r in out.readings] == [2.0, 3.0]  # their aliases are known: used, in seq order
    assert h.reasons() == ["sequence_gap"]
    assert f"expected {lost}, which did not come within 2 s" in h.bad[0][2]
    assert h.session.next_deadline() is None
    assert values(h.ddata(value=4.0)) == {("cnc-01", "speed"): 4.0}  # the session goes on from the last seq
    assert h.reasons() == ["sequence_gap"]


def test_a_dbirth_that_overtakes_its_nbirth_after_a_restart_is_used_after_it() -> None:
    h = Host(reorder_s=2.0).born()
    h.ddata()
    # the node restarts: NBIRTH (seq 0) and DBIRTH (seq 1) of the new session, delivered the other way round
    h.seq = 0
    early = h.dbirth_cnc()  # seq 1
    assert (early.readings, early.online, early.rebirths) == ([], [], [])
    out = h.nbirth(bdseq=1)
    assert out.online == ["node-01", "cnc-01"]
    assert values(out)[("cnc-01", "speed")] == 1200.5
    h.seq = 1
    assert values(h.ddata(value=1000.0)) == {("cnc-01", "speed"): 1000.0}  # alias 10 of the new DBIRTH
    assert (h.bad, out.rebirths) == ([], [])


def test_a_held_message_older_than_the_next_nbirth_is_dropped() -> None:
    h = Host(reorder_s=2.0).born()
    h.ddata(seq=h.seq + 2)  # stamped 3_000: the session before
    out = h.nbirth(bdseq=1, timestamp=4_000)
    assert h.session.next_deadline() is None  # nothing held any more
    h.dbirth_cnc()
    h.clock.t += 5
    assert h.session.tick().readings == []
    assert out.rebirths == []


def test_data_before_any_birth_waits_then_asks_once() -> None:
    h = Host(reorder_s=2.0)
    outs = [h.ddata() for _ in range(3)]
    assert [(o.readings, o.rebirths) for o in outs] == [([], [])] * 3
    assert h.bad == []
    h.clock.t += 2.0
    out = h.session.tick()
    assert (out.readings, out.rebirths) == ([], [(G, N)])
    assert h.reasons() == ["before_birth"] * 3


def test_what_is_held_is_bounded_and_never_overwritten() -> None:
    """Faster than 256 messages per reorder timeout, the seq space wraps while a gap is awaited: what is held is
    used (or, before any birth, counted) then and there, never replaced by a newer message with its seq."""
    h = Host(reorder_s=2.0)
    outs = [h.ddata(seq=i % 256) for i in range(300)]
    assert sum(1 for o in outs if o.rebirths) == 1
    assert h.reasons() == ["before_birth"] * 255  # held, then given up when the window was full
    assert len(h.session.nodes[(G, N)].held) == 45  # the rest waits in a new window: 255 + 45 = 300, none lost
    h = Host(reorder_s=2.0).born()
    first = h.seq + 2  # seq first - 1 is lost; 256 messages later the seq space has wrapped (ambiguous by nature)
    outs = [h.ddata(seq=(first + i) % 256, value=float(i)) for i in range(300)]
    h.clock.t += 2.0
    outs.append(h.session.tick())
    used = [r.value for o in outs for r in o.readings]
    assert sorted(used) == [float(i) for i in range(300)]  # every message used once: none overwritten or lost


def test_an_nbirth_the_ndeath_overtook_does_not_revive_the_node() -> None:
    h = Host(reorder_s=2.0)
    h.nbirth(bdseq=7)
    h.dbirth_cnc()
    assert h.ndeath(7).offline
    h.clock.t += 0.1
    late = h.nbirth(bdseq=7)  # the rebirth in flight when the node died, delivered after its will
    assert (late.online, late.readings, late.rebirths) == ([], [], [])
    assert h.reasons() == ["late_birth"]
    h.clock.t += 1.0
    assert h.session.tick().rebirths == []
    h.clock.t += 1.0  # the window has passed: ask, in case the node restarted with the same bdSeq
    assert h.session.tick().rebirths == [(G, N)]
    assert h.nbirth(bdseq=7).online == ["node-01"]


def test_an_nbirth_of_a_new_bdseq_right_after_the_ndeath_is_a_new_session() -> None:
    h = Host(reorder_s=2.0)
    h.nbirth(bdseq=7)
    h.ndeath(7)
    assert h.nbirth(bdseq=8).online == ["node-01"]
    assert h.bad == []
