r"""Readings to InfluxDB line protocol: the hot path, plain string building, no client library.

Schema: measurement = machine kind; tags lab, machine, site (empty ones omitted); one line per machine and
timestamp (in the write precision) holding every signal of that machine at that time as a field. A good value is
the field `<signal>`; an uncertain one adds `<signal>_quality="uncertain"`; a bad one (or a missing value) is only
`<signal>_quality="bad"`.

Escaping follows the InfluxDB 1.x/2.x parser (`models`, `pkg/escape`), verified against influxd 1.6 by a property
test: it unescapes `\,` `\=` `\ ` (and `\"` in field keys) but pairs backslashes when splitting a line. So a name
cannot be written if it ends in a backslash, has an odd run of backslashes before a separator, or holds a control
character (a newline ends the line, leading tabs and NULs are stripped, and 1.x echoes a bad line in an HTTP header
where control characters are illegal): such readings are returned as rejected, never sent.

Free text — event titles and messages, names typed by people, job file names — goes through the sanitising
variant instead (`clean_name`, `clean_text`, `text_line`): what cannot be carried is replaced, never rejected, so
an odd character in an alert message cannot hold back the export of the events behind it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from gateway.config.models import Precision
from gateway.machines import MachineMeta
from gateway.reading import Quality, Reading
from gateway.sinks.base import Rejected

DIVISOR: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
QUALITY_SUFFIX = "_quality"
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_BAD = '"bad"'
_UNCERTAIN = '"uncertain"'


class Line(NamedTuple):
    text: str
    readings: tuple[Reading, ...]


class Encoded(NamedTuple):
    lines: list[Line]
    rejected: list[Rejected]


class LineProtocolError(ValueError):
    """A name or value line protocol cannot carry unchanged."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ODD_BACKSLASHES_BEFORE_KEY_SPECIAL = re.compile(r"(?<!\\)\\(?:\\\\)*[, =]")
_ODD_BACKSLASHES_BEFORE_MEASUREMENT_SPECIAL = re.compile(r"(?<!\\)\\(?:\\\\)*[, ]")
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and newline are literal inside a quoted string
_ODD_BACKSLASHES = re.compile(r"(?<!\\)(?:\\\\)*\\(?=[, =])")
_KEY_TABLE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_MEASUREMENT_TABLE = str.maketrans({",": "\\,", " ": "\\ "})


def _check_name(what: str, s: str, odd_backslashes: re.Pattern[str]) -> None:
    if not s:
        raise LineProtocolError(f"{what} is empty")
    if s[-1] == "\\":
        raise LineProtocolError(f"{what} {s!r} ends with a backslash")
    if _CONTROL.search(s):
        raise LineProtocolError(f"{what} {s!r} contains a control character or a lone surrogate")
    if odd_backslashes.search(s):
        raise LineProtocolError(f"{what} {s!r} has an odd number of backslashes before a separator")


def escape_tag(s: str, what: str = "tag") -> str:
    """Escape a tag key or value: `,` `=` and space (1.x keeps `\\"` in tags as it is)."""
    _check_name(what, s, _ODD_BACKSLASHES_BEFORE_KEY_SPECIAL)
    return s.translate(_KEY_TABLE)


def escape_field_key(s: str) -> str:
    """Escape a field key: `,` `=` and space, and a backslash before `"` is doubled (1.x reads `\\"` as `"`)."""
    _check_name("signal name", s, _ODD_BACKSLASHES_BEFORE_KEY_SPECIAL)
    if '\\"' in s:
        s = s.replace('\\"', '\\\\"')
    return s.translate(_KEY_TABLE)


def escape_measurement(s: str) -> str:
    _check_name("measurement", s, _ODD_BACKSLASHES_BEFORE_MEASUREMENT_SPECIAL)
    if s[0] == "#":
        raise LineProtocolError(f"measurement {s!r} starts with '#', which makes the line a comment")
    if '\\"' in s:
        raise LineProtocolError(f"measurement {s!r} has a backslash before a quote")
    return s.translate(_MEASUREMENT_TABLE)


def quote_string(s: str) -> str:
    """A string field value: quoted, with `\\` and `"` escaped (a newline inside the quotes is literal)."""
    if not s.isascii() and _SURROGATE.search(s):
        raise LineProtocolError(f"string {s!r} holds a lone surrogate, which is not UTF-8")
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if '"' in s:
        s = s.replace('"', '\\"')
    return f'"{s}"'


def clean_name(s: str) -> str:
    """Free text made into a tag key, tag value or field key that `escape_tag`/`escape_field_key` accept: control
    characters (newlines too) become spaces, lone surrogates U+FFFD, an odd run of backslashes before a separator
    gets one more and trailing backslashes go. Empty when nothing is left (callers leave such a tag out)."""
    if not s.isascii():
        s = _SURROGATE.sub("\ufffd", s)
    s = _NAME_CONTROL.sub(" ", s)
    if "\\" in s:
        s = _ODD_BACKSLASHES.sub(lambda m: m.group(0) + "\\", s).rstrip("\\")
    return s


def clean_text(s: str) -> str:
    """Free text made into what a string field carries unchanged: lone surrogates become U+FFFD and control
    characters other than tab and newline (which are literal inside the quotes) become spaces."""
    if not s.isascii():
        s = _SURROGATE.sub("\ufffd", s)
    return _TEXT_CONTROL.sub(" ", s)


FieldValue = bool | int | float | str | None


def field_value(v: object) -> str | None:
    """A field value as line protocol, strings sanitised (`clean_text`); None for what a field cannot hold
    (None, NaN, infinities, integers beyond 64 bits, other types)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i" if _INT_MIN <= v <= _INT_MAX else None
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, str):
        return quote_string(clean_text(v))
    return None


def text_line(measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, object], ts: int) -> str | None:
    """One line from free-text tags and fields (the exporters' points): names sanitised (`clean_name`), tags in
    sorted key order with empty ones left out, fields in the given order without those `field_value` cannot
    write; None when no field is left."""
    head = escape_measurement(measurement)
    cleaned = {clean_name(k): clean_name(v) for k, v in tags.items() if v}
    for key, value in sorted(cleaned.items()):
        if key and value:
            head += f",{escape_tag(key)}={escape_tag(value)}"
    body: dict[str, str] = {}
    for k, v in fields.items():
        key, text = clean_name(k), field_value(v)
        if key and text is not None:
            body[escape_field_key(key)] = text
    if not body:
        return None
    return f"{head} {','.join(f'{k}={v}' for k, v in body.items())} {ts}"


def machine_prefix(meta: MachineMeta) -> str:
    """Escaped `measurement,lab=..,machine=..,site=..` (tags in sorted key order, empty ones left out)."""
    out = escape_measurement(meta.kind)
    if meta.lab:
        out += ",lab=" + escape_tag(meta.lab, "lab")
    out += ",machine=" + escape_tag(meta.id, "machine id")
    if meta.site:
        out += ",site=" + escape_tag(meta.site, "site")
    return out


class LineEncoder:
    """Encodes batches of readings; caches each machine's tag prefix and each signal's field keys."""

    def __init__(self, machines: Mapping[str, MachineMeta], precision: Precision = "ns") -> None:
        self.machines = machines
        self.precision = precision
        self._div = DIVISOR[precision]
        self._prefixes: dict[str, tuple[str, str]] = {}
        self._keys: dict[str, tuple[str, str, str]] = {}

    def _prefix(self, machine: str) -> tuple[str, str]:
        """(prefix, "") or ("", reason)."""
        meta = self.machines.get(machine)
        if meta is None:
            got = ("", f"unknown machine {machine!r}")
        else:
            try:
                got = (machine_prefix(meta), "")
            except LineProtocolError as err:
                got = ("", f"machine {machine!r}: {err}")
        self._prefixes[machine] = got
        return got

    def _field_keys(self, signal: str) -> tuple[str, str, str]:
        """(value key, quality key prefix with '=', "") or ("", "", reason)."""
        try:
            got = (escape_field_key(signal), escape_field_key(signal + QUALITY_SUFFIX) + "=", "")
        except LineProtocolError as err:
            got = ("", "", str(err))
        self._keys[signal] = got
        return got

    def encode(self, readings: Iterable[Reading]) -> Encoded:
        div = self._div
        groups: dict[tuple[str, int], dict[str, Reading]] = {}
        members: dict[tuple[str, int], list[Reading]] = {}
        for r in readings:
            key = (r.machine, r.source_ns // div)
            sigs = groups.get(key)
            if sigs is None:
                groups[key] = {r.signal: r}
                members[key] = [r]
                continue
            prev = sigs.get(r.signal)
            if prev is None or r.source_ns >= prev.source_ns:
                sigs[r.signal] = r
            members[key].append(r)

        lines: list[Line] = []
        rejected: list[Rejected] = []
        prefixes, field_keys, isfinite = self._prefixes, self._keys, math.isfinite
        good, bad = Quality.GOOD, Quality.BAD
        for key, sigs in groups.items():
            machine, ts = key
            prefix, why = prefixes.get(machine) or self._prefix(machine)
            if why:
                rejected.append(Rejected(tuple(members[key]), "", why))
                continue
            fields: list[str] = []
            failed: dict[str, str] | None = None
            for r in sigs.values():
                vkey, qkey, why = field_keys.get(r.signal) or self._field_keys(r.signal)
                if not why:
                    v, q = r.value, r.quality
                    if q is bad or v is None:
                        fields.append(qkey + (_BAD if q is bad else f'"{q.value}"'))
                        continue
                    if type(v) is float:
                        if isfinite(v):
                            fields.append(f"{vkey}={v!r}")
                        else:
                            why = f"{v!r} is not a finite number"
                    elif type(v) is int:
                        if _INT_MIN <= v <= _INT_MAX:
                            fields.append(f"{vkey}={v}i")
                        else:
                            why = f"integer {v} is out of the 64-bit range"
                    elif type(v) is str:
                        try:
                            fields.append(f"{vkey}={quote_string(v)}")
                        except LineProtocolError as err:
                            why = str(err)
                    elif type(v) is bool:
                        fields.append(f"{vkey}=true" if v else f"{vkey}=false")
                    else:
                        why = f"value type {type(v).__name__} is not supported"
                    if not why:
                        if q is not good:
                            fields.append(qkey + _UNCERTAIN)
                        continue
                if failed is None:
                    failed = {}
                failed[r.signal] = f"signal {r.signal!r}: {why}"
            if failed is None:
                taken = tuple(members[key])
            else:
                taken = tuple(x for x in members[key] if x.signal not in failed)
                for signal, why in failed.items():
                    rejected.append(Rejected(tuple(x for x in members[key] if x.signal == signal), "", why))
            if fields:
                lines.append(Line(f"{prefix} {','.join(fields)} {ts}", taken))
        return Encoded(lines, rejected)


def encode(readings: Iterable[Reading], machines: Mapping[str, MachineMeta], precision: Precision = "ns") -> Encoded:
    """One-off encoding; long-lived callers keep a LineEncoder for its caches."""
    return LineEncoder(machines, precision).encode(readings)
