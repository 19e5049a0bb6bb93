"""What Grafana does to an InfluxQL query before InfluxDB sees it, so tests can run the exact text.

Two steps, as in Grafana 10+ with the InfluxDB backend:
1. the frontend template service replaces dashboard variables (`$var`, `${var}`, `${var:format}`, `[[var]]`) in
   the `regex` format: values are regex-escaped (`escapeRegex` of `@grafana/data`), several become `(a|b)`, and
   "All" becomes the variable's custom all value unchanged, or every option; `$__interval` is left for step 2;
2. the backend (`pkg/tsdb/influxdb/influxql/models/query.go`) replaces `$timeFilter` with
   `time >= <from>ms and time <= <to>ms`, then `$interval`, `$__interval_ms` and `$__interval`.
The interval is Grafana's: (to - from) / max data points, rounded (`rangeutil.roundInterval`), never below the
datasource's minimum interval, written by `gtime.FormatInterval`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ALL = "$__all"

_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")

# (upper bound exclusive in ms, rounded interval in ms) — Grafana's rangeutil.roundInterval
_ROUND_MS: tuple[tuple[int, int], ...] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000), (3_500, 2_000),
    (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000), (45_000, 30_000), (90_000, 60_000),
    (210_000, 120_000), (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (32_400_000, 21_600_000), (86_400_000, 43_200_000), (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)
_YEAR_MS = 31_536_000_000


def escape_regex(value: str) -> str:
    """`escapeRegex` of @grafana/data."""
    return _SPECIAL.sub(lambda m: "\\" + m.group(0), value)


@dataclass(frozen=True)
class Variable:
    """A dashboard variable as the template service sees it: its options and what is selected."""

    name: str
    options: Sequence[str]
    selected: Sequence[str] = (ALL,)
    all_value: str | None = None

    def values(self) -> list[str] | None:
        """Selected values, or None when "All" with a custom all value is selected."""
        if ALL in self.selected:
            return None if self.all_value is not None else list(self.options)
        return list(self.selected)


def _format(var: Variable, fmt: str) -> str:
    values = var.values()
    if values is None:
        assert var.all_value is not None
        return var.all_value  # Grafana skips formatting of custom all values
    if fmt == "raw":
        return ",".join(values)
    if fmt == "regex":
        escaped = [escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    raise ValueError(f"variable format {fmt!r} is not implemented here; use regex or raw")


def replace_variables(text: str, variables: Mapping[str, Variable], default_format: str = "regex") -> str:
    """Step 1: dashboard variables; unknown names (`$timeFilter`, `$__interval`) stay for the backend."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6) or default_format
        var = variables.get(name)
        return m.group(0) if var is None else _format(var, fmt)

    return _VARIABLE.sub(sub, text)


def round_interval_ms(interval_ms: float) -> int:
    for bound, rounded in _ROUND_MS:
        if interval_ms < bound:
            return rounded
    return _YEAR_MS


def format_interval(ms: int) -> str:
    """gtime.FormatInterval."""
    for unit, size in (("y", _YEAR_MS), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms >= 1 else "1ms"


def parse_interval_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if m is None:
        raise ValueError(f"interval {text!r} is not a number with ms, s, m, h or d")
    return int(m.group(1)) * {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2)]


@dataclass(frozen=True)
class TimeRange:
    from_ms: int
    to_ms: int
    max_data_points: int = 1000
    min_interval_ms: int = 1000

    def interval_ms(self) -> int:
        raw = (self.to_ms - self.from_ms) / max(1, self.max_data_points)
        return max(round_interval_ms(raw), self.min_interval_ms)


def backend_macros(text: str, rng: TimeRange) -> str:
    """Step 2, in the backend's order."""
    ms = rng.interval_ms()
    text = text.replace("$timeFilter", f"time >= {rng.from_ms}ms and time <= {rng.to_ms}ms")
    text = text.replace("$interval", format_interval(ms))
    text = text.replace("$__interval_ms", str(ms))
    return text.replace("$__interval", format_interval(ms))


@dataclass(frozen=True)
class Context:
    variables: Mapping[str, Variable] = field(default_factory=dict)
    time_range: TimeRange = field(default_factory=lambda: TimeRange(0, 3_600_000))

    def render(self, query: str) -> str:
        return backend_macros(replace_variables(query, self.variables), self.time_range)


def apply_variable_regex(values: Sequence[str], regex: str | None) -> list[str]:
    """A query variable's `regex` option (a JavaScript `/.../flags` literal) keeps the values it matches."""
    if not regex:
        return list(values)
    m = re.fullmatch(r"/(.*)/([gimsuy]*)", regex, flags=re.DOTALL)
    pattern = re.compile(m.group(1), re.IGNORECASE if m and "i" in m.group(2) else 0) if m else re.compile(regex)
    return [v for v in values if pattern.search(v)]
