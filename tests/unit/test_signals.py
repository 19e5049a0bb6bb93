"""The shared signal settings and the one conversion every driver uses (gateway/signals.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.reading import Quality, Reading
from gateway.signals import MAX_TEXT, BadValue, Deadband, SignalSettings, convert


def s(**kw: Any) -> SignalSettings:
    return SignalSettings.model_validate(kw)


@pytest.mark.parametrize(("raw", "settings", "want"), [
    (21.5, {}, 21.5),
    (21, {}, 21.0),
    (" 21.5\n", {}, 21.5),
    ("1e3", {}, 1000.0),
    (455, {"scale": 0.1}, 45.5),
    (20, {"scale": 2, "offset": -10}, 30.0),
    (12, {"type": "int"}, 12),
    (12.0, {"type": "int"}, 12),
    ("12", {"type": "int"}, 12),
    ("+12", {"type": "int"}, 12),
    (2**70, {"type": "int"}, 2**70),  # exact, never through a float
    (8, {"type": "int", "scale": 0.5}, 4),
    (True, {"type": "bool"}, True),
    (0, {"type": "bool"}, False),
    (1.0, {"type": "bool"}, True),
    ("ON", {"type": "bool"}, True),
    (" off ", {"type": "bool"}, False),
    ("Yes", {"type": "bool"}, True),
    ("0", {"type": "bool"}, False),
    ("bracket.gcode", {"type": "string"}, "bracket.gcode"),
    (7, {"type": "string"}, "7"),
    (1.5, {"type": "string"}, "1.5"),
    (False, {"type": "string"}, "false"),
    ("Executing", {"type": "string", "map": {"Executing": "running"}}, "running"),
    ("Aborted", {"type": "string", "map": {"Executing": "running"}}, "Aborted"),
    (3, {"type": "string", "map": {3: "running"}}, "running"),
    ("ST", {"type": "bool", "map": {"ST": True, "US": False}}, True),
    ("US", {"type": "bool", "map": {"ST": True, "US": False}}, False),
    ("true", {"type": "bool", "map": {"ST": True}}, True),
    ("----", {"map": {"----": 0}}, 0.0),
    ("----", {"type": "int", "map": {"----": -1}, "scale": 2}, -1),  # a mapped value is not scaled
])
def test_values_that_convert(raw: object, settings: dict[str, Any], want: object) -> None:
    got = convert(raw, s(**settings))
    assert got == want
    assert type(got) is type(want)


@pytest.mark.parametrize(("raw", "settings", "reason"), [
    ("hot", {}, "not_a_number"),
    ("", {}, "not_a_number"),
    ("1_000", {}, "not_a_number"),
    (True, {}, "not_a_number"),
    ({"v": 1}, {}, "not_a_number"),
    (float("nan"), {}, "non_finite"),
    (float("inf"), {"type": "int"}, "non_finite"),
    ("nan", {}, "non_finite"),
    ("-Infinity", {}, "non_finite"),
    (1e308, {"scale": 10}, "non_finite"),
    (10**400, {}, "non_finite"),
    pytest.param(10**5000, {"type": "string"}, "text_too_long", id="5000 digits"),
    (1.5, {"type": "int"}, "not_an_integer"),
    ("12.5", {"type": "int"}, "not_an_integer"),  # the serial driver used to round this
    (5, {"type": "int", "scale": 0.5}, "not_an_integer"),
    ("maybe", {"type": "bool"}, "not_a_bool"),
    ("ready", {"type": "bool"}, "not_a_bool"),  # the serial driver used to read this as false
    ("US", {"type": "bool", "map": {"ST": True}}, "not_a_bool"),
    (2, {"type": "bool"}, "not_a_bool"),
    (None, {}, "null_value"),
    (None, {"type": "string"}, "null_value"),
    ([1, 2], {"type": "string"}, "wrong_type"),
    (float("nan"), {"type": "string"}, "non_finite"),
    ("x" * (MAX_TEXT + 1), {"type": "string"}, "text_too_long"),
])
def test_values_refused_with_a_reason(raw: object, settings: dict[str, Any], reason: str) -> None:
    assert convert(raw, s(**settings)) == BadValue(reason)


def test_resolved_kind_overrides_auto() -> None:
    auto = SignalSettings.model_validate({"type": "float"})
    assert convert(7, auto, "int") == 7
    assert convert("Executing", auto, "string") == "Executing"


@pytest.mark.parametrize(("settings", "message"), [
    ({"type": "string", "scale": 2}, "scale and offset apply to numbers; a string signal cannot be scaled"),
    ({"type": "bool", "deadband": 1}, "deadband applies to numbers; a bool signal is reported on every value"),
    ({"type": "bool", "map": {"ST": "yes"}}, "map: 'ST' -> 'yes' does not fit type bool; map to true or false"),
    ({"type": "int", "map": {"x": 1.5}}, "map: 'x' -> 1.5 does not fit type int; map to a whole number"),
    ({"type": "auto"}, "type auto needs a source that declares its data type (OPC UA)"),
    ({"scale": 0}, "is 0, which makes every value equal to offset"),
    ({"scale": "nan"}, "finite number"),
    ({"deadband": -1}, "greater than or equal to 0"),
    ({"unit": "celcius"}, 'did you mean "degC"?'),
])
def test_settings_that_cannot_work_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        s(**settings)
    assert message in str(err.value)


def test_yaml_keys_of_a_map_become_text() -> None:
    assert s(type="string", map={0: "idle", True: "on", 2.0: "two"}).map == {"0": "idle", "true": "on", "2": "two"}


def test_every_settings_field_is_described() -> None:
    for name, field in SignalSettings.model_fields.items():
        assert field.description, name


# --- properties ---------------------------------------------------------------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(raw=st.one_of(finite, st.integers(-10**12, 10**12)), scale=finite.filter(lambda x: abs(x) > 1e-6),
       offset=finite)
def test_float_is_raw_times_scale_plus_offset(raw: float, scale: float, offset: float) -> None:
    got = convert(raw, s(scale=scale, offset=offset))
    assert isinstance(got, float)
    assert got == float(raw) * scale + offset
    assert convert(repr(raw), s(scale=scale, offset=offset)) == got  # its text reads the same


@given(raw=st.one_of(finite, st.integers(-10**15, 10**15)))
def test_int_is_exact_or_refused_never_rounded(raw: float) -> None:
    got = convert(raw, s(type="int"))
    if float(raw).is_integer():
        assert got == raw
        assert type(got) is int
    else:
        assert got == BadValue("not_an_integer")


@given(raw=st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300), st.floats(),
                     st.text(max_size=20),
                     st.lists(st.integers(), max_size=2)),
       kind=st.sampled_from(["float", "int", "bool", "string"]))
def test_a_value_has_the_signal_type_or_a_reason(raw: object, kind: str) -> None:
    got = convert(raw, s(type=kind))
    if isinstance(got, BadValue):
        return
    want = {"float": float, "int": int, "bool": bool, "string": str}[kind]
    assert type(got) is want
    if isinstance(got, float):
        assert math.isfinite(got)


@given(word=st.text(max_size=8))
def test_bool_text_is_one_of_the_words_or_refused(word: str) -> None:
    got = convert(word, s(type="bool"))
    w = word.strip().lower()
    if w in ("true", "on", "yes", "1"):
        assert got is True
    elif w in ("false", "off", "no", "0"):
        assert got is False
    else:
        assert got == BadValue("not_a_bool")


# --- deadband -----------------------------------------------------------------------------------------------
SEC = 1_000_000_000


def reading(value: object, t_s: float, quality: Quality = Quality.GOOD) -> Reading:
    return Reading("m", "x", value, None, quality, int(t_s * SEC), int(t_s * SEC))  # type: ignore[arg-type]


def test_deadband_compares_with_the_last_value_passed_on() -> None:
    d = Deadband(0.5, hold_ns=10 * SEC)
    got = [d.passes(reading(v, t)) for t, v in enumerate([10.0, 10.3, 10.5, 10.6, 10.2, 9.9])]
    #                                                    first  0.3   0.5   0.6>  0.4   0.7>
    assert got == [True, False, False, True, False, True]


def test_deadband_zero_passes_changes_only() -> None:
    d = Deadband(0.0, hold_ns=10 * SEC)
    assert [d.passes(reading(v, t)) for t, v in enumerate([1, 1, 2, 2, 1])] == [True, False, True, False, True]


def test_deadband_repeats_after_the_hold_time_and_on_quality_or_type_changes() -> None:
    d = Deadband(5.0, hold_ns=2 * SEC)
    assert d.passes(reading(100.0, 0.0))
    assert not d.passes(reading(101.0, 1.0))
    assert d.passes(reading(101.0, 2.0))  # held for 2 s: passed so the machine stays online
    assert d.passes(reading(101.0, 2.5, Quality.UNCERTAIN))
    assert d.passes(reading(None, 3.0, Quality.BAD))
    assert d.passes(reading(101.0, 3.5))
    assert d.passes(reading("text", 3.6))
    assert d.passes(reading("text", 3.7))  # only numbers are held back


@given(values=st.lists(finite, min_size=1, max_size=30), band=st.floats(0, 100))
def test_deadband_passes_exactly_the_values_beyond_the_band(values: list[float], band: float) -> None:
    d = Deadband(band, hold_ns=10**18)
    last: float | None = None
    for i, v in enumerate(values):
        expect = last is None or abs(v - last) > band
        assert d.passes(reading(v, i)) is expect
        if expect:
            last = v
