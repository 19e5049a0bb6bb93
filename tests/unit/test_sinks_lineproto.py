"""Line protocol encoding: schema, escaping, precision, quality and what is rejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.machines import MachineMeta
from gateway.reading import Quality, Reading, Value
from gateway.sinks.lineproto import (
    LineEncoder,
    LineProtocolError,
    clean_name,
    clean_text,
    encode,
    escape_field_key,
    escape_measurement,
    escape_tag,
    field_value,
    quote_string,
    text_line,
)

T0 = 1_700_000_000_123_456_789
PRINTER = MachineMeta("fdm-01", "Printer 1", "printer", "mqtt", "kartech", "proto-shop")
MACHINES = {PRINTER.id: PRINTER}


def rd(signal: str, value: Value, quality: Quality = Quality.GOOD, ts: int = T0, machine: str = "fdm-01") -> Reading:
    return Reading(machine, signal, value, None, quality, ts, ts + 5)


def texts(readings: list[Reading], machines: dict[str, MachineMeta] = MACHINES, precision: str = "ns") -> list[str]:
    return [line.text for line in encode(readings, machines, precision).lines]  # type: ignore[arg-type]


def test_one_line_per_machine_and_timestamp_with_all_fields() -> None:
    out = encode([rd("nozzle_temp", 215.5), rd("layer", 12), rd("door_open", False), rd("job", "gear.gcode")], MACHINES)
    assert [line.text for line in out.lines] == [
        "printer,lab=proto-shop,machine=fdm-01,site=kartech nozzle_temp=215.5,layer=12i,door_open=false,"
        f'job="gear.gcode" {T0}'
    ]
    assert len(out.lines[0].readings) == 4
    assert out.rejected == []


def test_lines_split_by_machine_and_time() -> None:
    other = MachineMeta("cnc-01", "CNC", "cnc", "opcua", "kartech")
    machines = {**MACHINES, other.id: other}
    got = texts([rd("a", 1.0), rd("a", 2.0, ts=T0 + 1), rd("b", True, machine="cnc-01")], machines)
    assert got == [
        f"printer,lab=proto-shop,machine=fdm-01,site=kartech a=1.0 {T0}",
        f"printer,lab=proto-shop,machine=fdm-01,site=kartech a=2.0 {T0 + 1}",
        f"cnc,machine=cnc-01,site=kartech b=true {T0}",
    ]


@pytest.mark.parametrize(
    ("precision", "ts"),
    [("ns", T0), ("us", T0 // 1_000), ("ms", T0 // 1_000_000), ("s", T0 // 1_000_000_000)],
)
def test_precision_truncates_source_time(precision: str, ts: int) -> None:
    assert texts([rd("a", 1.5)], precision=precision) == [
        f"printer,lab=proto-shop,machine=fdm-01,site=kartech a=1.5 {ts}"
    ]


def test_coarse_precision_merges_readings_and_keeps_the_latest_value() -> None:
    out = encode([rd("a", 2.0, ts=T0 + 10), rd("a", 1.0, ts=T0), rd("b", 3)], MACHINES, "s")
    assert [line.text for line in out.lines] == [
        f"printer,lab=proto-shop,machine=fdm-01,site=kartech a=2.0,b=3i {T0 // 1_000_000_000}"
    ]
    assert len(out.lines[0].readings) == 3


def test_quality_fields() -> None:
    got = texts([rd("t", 20.5, Quality.UNCERTAIN), rd("p", 7.0, Quality.BAD), rd("q", None)])
    assert got == [
        'printer,lab=proto-shop,machine=fdm-01,site=kartech t=20.5,t_quality="uncertain",p_quality="bad",'
        f'q_quality="good" {T0}'
    ]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (1.0, "v=1.0"),
        (-0.25, "v=-0.25"),
        (1e300, "v=1e+300"),
        (5e-324, "v=5e-324"),
        (0, "v=0i"),
        (-(2**63), f"v={-(2**63)}i"),
        (2**63 - 1, f"v={2**63 - 1}i"),
        (True, "v=true"),
        ("", 'v=""'),
        ('say "hi"', r'v="say \"hi\""'),
        ("C:\\dir\\", r'v="C:\\dir\\"'),
        ("two\nlines", 'v="two\nlines"'),
        ("a,b=c d", 'v="a,b=c d"'),
    ],
)
def test_field_values(value: Value, field: str) -> None:
    assert texts([rd("v", value)]) == [f"printer,lab=proto-shop,machine=fdm-01,site=kartech {field} {T0}"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "signal 'v': nan is not a finite number"),
        (float("inf"), "signal 'v': inf is not a finite number"),
        (2**63, f"signal 'v': integer {2**63} is out of the 64-bit range"),
        ("a\udc80", "signal 'v': string 'a\\udc80' holds a lone surrogate, which is not UTF-8"),
    ],
)
def test_unencodable_values_are_rejected_and_the_rest_of_the_line_kept(value: Value, reason: str) -> None:
    bad = rd("v", value)
    out = encode([rd("ok", 1.0), bad], MACHINES)
    assert [line.text for line in out.lines] == [f"printer,lab=proto-shop,machine=fdm-01,site=kartech ok=1.0 {T0}"]
    assert out.lines[0].readings == (rd("ok", 1.0),)
    assert [(r.readings, r.reason) for r in out.rejected] == [((bad,), reason)]


def test_unknown_machine_is_rejected() -> None:
    r = rd("a", 1.0, machine="ghost")
    out = encode([r], MACHINES)
    assert out.lines == []
    assert [(x.readings, x.reason) for x in out.rejected] == [((r,), "unknown machine 'ghost'")]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
        ('a"b', 'a"b'),
        (r"a\b", r"a\b"),
        ("a\\\\,b", "a\\\\\\,b"),
        ('a\\"b', 'a\\\\"b'),
        ("Ünïcødé 温度", "Ünïcødé\\ 温度"),
    ],
)
def test_escape_field_key(raw: str, escaped: str) -> None:
    assert escape_field_key(raw) == escaped


@pytest.mark.parametrize(("raw", "escaped"), [("a b,c=d", r"a\ b\,c\=d"), ('a\\"b', 'a\\"b'), ("ü", "ü")])
def test_escape_tag(raw: str, escaped: str) -> None:
    assert escape_tag(raw) == escaped


@pytest.mark.parametrize(("raw", "escaped"), [("a b,c", r"a\ b\,c"), ("a=b", "a=b"), ('a"b', 'a"b')])
def test_escape_measurement(raw: str, escaped: str) -> None:
    assert escape_measurement(raw) == escaped


@pytest.mark.parametrize(
    "raw", ["", "ends\\", "new\nline", "\ttab", "nul\x00", "del\x7f", "a\\ b", "a\\\\\\,b", "\ud800"]
)
def test_unrepresentable_names(raw: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_tag(raw)
    with pytest.raises(LineProtocolError):
        escape_field_key(raw)
    with pytest.raises(LineProtocolError):
        escape_measurement(raw)


def test_measurement_with_backslash_before_quote_is_rejected() -> None:
    with pytest.raises(LineProtocolError, match="backslash before a quote"):
        escape_measurement('a\\"')


def test_measurement_starting_with_hash_is_rejected() -> None:
    meta = MachineMeta("m1", "M", "#kind", "mqtt", "s")
    out = encode([rd("a", 1.0, machine="m1")], {"m1": meta})
    assert out.lines == []
    assert out.rejected[0].reason == "machine 'm1': measurement '#kind' starts with '#', which makes the line a comment"


def test_tags_escaped_and_empty_ones_omitted() -> None:
    meta = MachineMeta("m1", "M", "power meter", "mqtt", "Main site, hall=2", "")
    assert texts([rd("kw", 1.5, machine="m1")], {"m1": meta}) == [
        rf"power\ meter,machine=m1,site=Main\ site\,\ hall\=2 kw=1.5 {T0}"
    ]


def test_quote_string() -> None:
    assert quote_string('a\\"b') == '"a\\\\\\"b"'


def test_encoder_reuses_prefix_cache() -> None:
    enc = LineEncoder(MACHINES)
    first = enc.encode([rd("a", 1.0)]).lines[0].text
    assert enc.encode([rd("a", 1.0)]).lines[0].text == first


# --- the sanitising variant, for free text (event titles and messages, names people type, job files) -------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("two\nlines\r\n", "two lines  "),
        ("\ttab nul\x00 del\x7f", " tab nul  del "),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("ends\\\\\\", "ends"),
        ("a\\ b", "a\\\\ b"),  # an odd run of backslashes before a separator gets one more
        ("a\\\\\\,b", "a\\\\\\\\,b"),
        ("a\\\\,b", "a\\\\,b"),  # an even run is left alone
        ("a\\b", "a\\b"),
        ("\n", " "),
        ("\\", ""),
    ],
)
def test_clean_name(raw: str, clean: str) -> None:
    assert clean_name(raw) == clean


@settings(max_examples=500)
@given(st.text())
def test_a_cleaned_name_is_always_accepted_and_cleaning_is_idempotent(raw: str) -> None:
    clean = clean_name(raw)
    if clean:
        escape_tag(clean)
        escape_field_key(clean)
    assert clean_name(clean) == clean


@settings(max_examples=300)
@given(st.text())
def test_a_representable_name_is_left_unchanged(raw: str) -> None:
    try:
        escape_tag(raw)
    except LineProtocolError:
        return
    assert clean_name(raw) == raw


@settings(max_examples=300)
@given(st.text())
def test_clean_text_is_always_quotable_and_keeps_tabs_and_newlines(raw: str) -> None:
    text = clean_text(raw)
    assert quote_string(text).startswith('"')
    text.encode()  # valid UTF-8
    assert text.count("\n") == raw.count("\n")
    assert text.count("\t") == raw.count("\t")
    assert len(text) == len(raw)


def test_clean_text() -> None:
    assert clean_text("a\x00b\x1bc\rd\ne\tf\ud83d") == "a b c d\ne\tf\ufffd"


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (3, "3i"), (2**63, None), (1.5, "1.5"), (float("nan"), None),
     (float("inf"), None), ("a\"b\x00", '"a\\"b "'), (None, None), ([1], None)],
)
def test_field_value(value: object, text: str | None) -> None:
    assert field_value(value) == text


def test_text_line_sorts_and_cleans_tags_and_drops_what_cannot_be_written() -> None:
    line = text_line("events", {"type": "alert", "machine": "m 1\n", "lab": None, "site": "", "rule": "r\\"},
                     {"title": "door\nopen", "count": 2, "bad": float("nan"), "key\x00": "x"}, T0)
    assert line == f'events,machine=m\\ 1\\ ,rule=r,type=alert title="door\nopen",count=2i,key\\ ="x" {T0}'
    assert text_line("events", {}, {"only": None}, T0) is None
