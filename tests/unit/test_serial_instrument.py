"""Reading instrument lines as configured: templates, patterns, value maps, deadband and field types."""

from __future__ import annotations

from drivers.serial.config import InstrumentField, InstrumentMessage
from drivers.serial.instrument import LineParser, read_field
from gateway.reading import Quality
from gateway.signals import BadValue


class Reasons:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str]] = []

    def __call__(self, reason: str, machine: str | None, detail: str) -> None:
        self.seen.append((reason, machine, detail))


def test_balance_line_parses_to_weight_and_stable() -> None:
    msg = InstrumentMessage(request="SI", template="{status},{mode},{weight:number} {unit}", fields={
        "weight": InstrumentField(unit="g"),
        "stable": InstrumentField(group="status", type="bool", map={"ST": True, "US": False}),
    })
    p = LineParser("balance-01", [msg], Reasons(), hold_s=1.0)
    readings = p.parse("ST,GS,+  12.345 g", 5)
    assert readings is not None
    assert [(r.signal, r.value, r.unit, r.quality) for r in readings] == [
        ("weight", 12.345, "g", Quality.GOOD), ("stable", True, None, Quality.GOOD)]
    unstable = p.parse("US,GS,-   0.002 g", 6)
    assert unstable is not None
    assert [r.value for r in unstable] == [-0.002, False]
    assert p.parse("ES", 7) is None


def test_unconvertible_group_is_a_bad_reading_without_value_counted_by_reason() -> None:
    msg = InstrumentMessage(pattern=r"^V=(?P<v>\S+)$", fields={"v": InstrumentField(unit="V", scale=1000.0)})
    reasons = Reasons()
    p = LineParser("meter", [msg], reasons, hold_s=1.0)
    good = p.parse("V=1.5", 1)
    assert good is not None
    assert good[0].value == 1500.0
    bad = p.parse("V=OVLD", 2)
    assert bad is not None
    assert (bad[0].value, bad[0].quality) == (None, Quality.BAD)
    assert reasons.seen == [("not_a_number", "meter", "v='OVLD'")]


def test_balance_status_outside_the_map_is_refused_never_false() -> None:
    msg = InstrumentMessage(template="{status},{weight:number} g", fields={
        "weight": InstrumentField(unit="g"),
        "stable": InstrumentField(group="status", type="bool", map={"ST": True, "US": False}),
    })
    reasons = Reasons()
    readings = LineParser("balance-01", [msg], reasons, hold_s=1.0).parse("OL,+ 999.999 g", 5)
    assert readings is not None
    assert [(r.signal, r.value, r.quality) for r in readings] == [
        ("weight", 999.999, Quality.GOOD), ("stable", None, Quality.BAD)]
    assert [r for r, _, _ in reasons.seen] == ["not_a_bool"]


def test_deadband_holds_back_small_changes_until_the_hold_time() -> None:
    msg = InstrumentMessage(template="{weight:number} g", fields={"weight": InstrumentField(unit="g", deadband=0.01)})
    p = LineParser("balance-01", [msg], Reasons(), hold_s=1.0)
    s = 1_000_000_000
    seen = [[r.value for r in p.parse(line, t) or []] for line, t in [
        ("10.000 g", 0), ("10.005 g", s // 10), ("10.020 g", 2 * s // 10), ("10.025 g", 3 * s // 10),
        ("10.025 g", 13 * s // 10)]]
    assert seen == [[10.0], [], [10.02], [], [10.025]]


def test_read_field_types() -> None:
    assert read_field("+ 12", InstrumentField(type="int")) == 12
    assert read_field(" ready ", InstrumentField(type="string")) == "ready"
    assert read_field("ON", InstrumentField(type="bool")) is True
    # what used to be rounded or read as false is refused with a reason
    assert read_field("12.5", InstrumentField(type="int")) == BadValue("not_an_integer")
    assert read_field("8", InstrumentField(type="int", scale=0.5)) == 4
    assert read_field("ready", InstrumentField(type="bool")) == BadValue("not_a_bool")
    assert read_field("nan", InstrumentField()) == BadValue("non_finite")
