"""Grafana's substitution as the dashboards checks replay it: variables, regex escaping, macros, intervals."""

from __future__ import annotations

from dashboards import influxql
from dashboards.interpolate import (
    ALL,
    Context,
    TimeRange,
    Variable,
    apply_variable_regex,
    escape_regex,
    format_interval,
    replace_variables,
    round_interval_ms,
)
from gateway import schema

RANGE = TimeRange(from_ms=1_700_000_000_000, to_ms=1_700_021_600_000)  # 6 h


def test_escape_regex_matches_grafana() -> None:
    assert escape_regex("a.b/c-d(e)") == r"a\.b\/c-d\(e\)"


def test_multi_values_single_value_all_and_custom_all() -> None:
    machine = Variable("machine", ["fdm-01", "cnc.02"], ["fdm-01", "cnc.02"])
    assert replace_variables("/^$machine$/", {"machine": machine}) == r"/^(fdm-01|cnc\.02)$/"
    assert replace_variables("/^${machine}$/", {"machine": Variable("machine", ["a", "b"], ["b"])}) == "/^b$/"
    assert replace_variables("[[kind]]", {"kind": Variable("kind", ["printer", "cnc"])}) == "(printer|cnc)"
    assert replace_variables("/^$lab$/", {"lab": Variable("lab", ["x"], [ALL], ".*")}) == "/^.*$/"
    assert replace_variables("tz('${tz:raw}')", {"tz": Variable("tz", ["Asia/Almaty"], ["Asia/Almaty"])}) \
        == "tz('Asia/Almaty')"
    assert replace_variables("$timeFilter $__interval $unknown", {}) == "$timeFilter $__interval $unknown"


def test_backend_macros_and_interval() -> None:
    ctx = Context({}, RANGE)
    assert ctx.render("WHERE $timeFilter GROUP BY time($__interval) -- $__interval_ms $interval") == (
        "WHERE time >= 1700000000000ms and time <= 1700021600000ms GROUP BY time(20s) -- 20000 20s")
    assert round_interval_ms(21_600) == 20_000
    assert round_interval_ms(100) == 100
    assert format_interval(86_400_000) == "1d"
    assert format_interval(500) == "500ms"
    assert TimeRange(0, 60_000, min_interval_ms=10_000).interval_ms() == 10_000


def test_kind_regex_hides_non_machine_measurements() -> None:
    got = apply_variable_regex([*schema.NOT_MACHINE_KINDS, "printer", "cnc", "eventsx"], influxql.KIND_REGEX)
    assert got == ["printer", "cnc", "eventsx"]
