"""Splitting serial bytes into lines, classifying garbage, and reading instrument lines as configured."""

from __future__ import annotations

import errno

from drivers.serial.config import InstrumentField, InstrumentMessage
from drivers.serial.instrument import LineParser, read_field
from drivers.serial.transport import Bad, Line, LineSplitter, explain_open_error
from gateway.reading import Quality
from gateway.signals import BadValue


class Reasons:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str]] = []

    def __call__(self, reason: str, machine: str | None, detail: str) -> None:
        self.seen.append((reason, machine, detail))


def test_lines_split_across_reads_with_any_line_ending() -> None:
    s = LineSplitter()
    assert s.feed(b"ok T:21", 0.0) == []
    assert s.feed(b"0.0 /0.0\r", 0.1) == []  # a CR at the end may be followed by LF
    assert s.feed(b"\nSD printing byte 1/2\rNot SD printing\n", 0.2) == [
        Line("ok T:210.0 /0.0"), Line("SD printing byte 1/2"), Line("Not SD printing")]


def test_garbage_is_classified_by_reason() -> None:
    s = LineSplitter(max_line_bytes=64)
    items = s.feed(b"T:210.0 /215.0\x00\x07ok\n" + bytes([0xF8, 0x80, 0xFE, 0x9C, 0xE0]) + b"\n" + b"X" * 100 + b"\n"
                   + b"\xc3\x28abc\n" + b"  \n" + b"ok\n", 0.0)
    assert [i.reason if isinstance(i, Bad) else i.text for i in items] == [
        "binary", "garbled", "over_long", "undecodable", "noise", "ok"]


def test_boot_marker_behind_reset_glitch_bytes_is_still_a_line() -> None:
    s = LineSplitter()
    assert s.feed(b"\xff\x00start\n\x00\xfeecho:start\n", 0.0) == [Line("start"), Line("echo:start")]
    assert isinstance(s.feed(b"\xff\x00\xf0restart\n", 0.0)[0], Bad)  # only the boot marker itself


def test_a_fragment_without_line_end_becomes_a_partial_line() -> None:
    s = LineSplitter(partial_timeout_s=2.0)
    assert s.feed(b"T:21", 10.0) == []
    assert s.expire(11.0) == []
    (bad,) = s.expire(12.5)
    assert isinstance(bad, Bad)
    assert bad.reason == "partial_line"
    assert s.feed(b"ok\n", 13.0) == [Line("ok")]


def test_over_long_line_is_skipped_to_its_end_even_across_reads() -> None:
    s = LineSplitter(max_line_bytes=16)
    first = s.feed(b"A" * 20, 0.0)
    assert [i.reason for i in first if isinstance(i, Bad)] == ["over_long"]
    assert s.feed(b"B" * 30 + b"\nok\n", 0.1) == [Line("ok")]


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


def test_open_errors_say_what_to_do() -> None:
    missing = explain_open_error("/dev/serial/by-id/usb-nothing-if00", FileNotFoundError(errno.ENOENT, "No such"))
    assert missing.startswith("/dev/serial/by-id/usb-nothing-if00 does not exist: is the device plugged in")
    denied = explain_open_error("/dev/null", PermissionError(errno.EACCES, "Permission denied"))
    assert denied.startswith("permission denied opening /dev/null: it belongs to group 'root'; add the gateway's "
                             "user to it (sudo usermod -aG root ")
    busy = explain_open_error("/dev/null", OSError(errno.EAGAIN, "Could not exclusively lock port"))
    assert busy.startswith("/dev/null is in use by another program")
    assert "one owner" in busy
