"""Pure topic routing and payload decoding: (topic, payload) -> readings and counted problems. No I/O."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from drivers.mqtt.config import FieldMap, MqttMachine, TimestampMap, TopicMap
from gateway.reading import Quality, Reading
from gateway.signals import BadInput, BadValue, Deadband, SignalSettings, convert

_NUMBER = SignalSettings()  # format number: a plain float
_TS_DIV = {"unix_s": 1_000_000_000, "unix_ms": 1_000_000, "unix_us": 1_000, "unix_ns": 1}


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    path: tuple[str, ...]
    settings: FieldMap
    deadband: Deadband | None


@dataclass(slots=True)
class Route:
    machine: str
    topic: TopicMap
    concrete: str
    signals: tuple[_Signal, ...] = ()
    ts_path: tuple[str, ...] | None = None
    ts_div: int = 0
    ts_iso: bool = False
    pattern: re.Pattern[str] | None = None
    units: dict[str, str] = field(default_factory=dict)


def _signal(name: str, f: FieldMap, hold_s: float) -> _Signal:
    path = tuple((f.path or name).split("."))
    deadband = None if f.deadband is None else Deadband(f.deadband, int(hold_s * 1e9))
    return _Signal(name, path, f, deadband)


def concrete_topic(template: str, site: str, machine: str) -> str:
    return template.replace("{site}", site).replace("{machine}", machine)


def topic_filter(concrete: str) -> str:
    return concrete.replace("{signal}", "+")


class Router:
    """Maps a topic to the machine route that reads it: exact topics by dict, {signal} topics by regex."""

    def __init__(self, machines: Sequence[MqttMachine], site: str) -> None:
        self.exact: dict[str, list[Route]] = {}
        self.patterns: list[Route] = []
        for m in machines:
            for t in m.topics:
                concrete = concrete_topic(t.topic, site, m.id)
                route = Route(m.id, t, concrete, units=dict(t.units))
                if t.format == "json":
                    route.signals = tuple(_signal(n, f, m.expected_interval_s) for n, f in t.fields.items())
                    if isinstance(t.timestamp, TimestampMap):
                        route.ts_path = tuple(t.timestamp.path.split("."))
                        route.ts_iso = t.timestamp.format == "iso8601"
                        route.ts_div = _TS_DIV.get(t.timestamp.format, 0)
                if "{signal}" in concrete:
                    rx = "^" + "/".join(
                        "(?P<signal>[^/]+)" if lvl == "{signal}" else re.escape(lvl) for lvl in concrete.split("/")
                    ) + "$"
                    route.pattern = re.compile(rx)
                    self.patterns.append(route)
                else:
                    self.exact.setdefault(concrete, []).append(route)
        self._exact_found: dict[str, list[tuple[Route, str | None]]] = {
            t: [(r, None) for r in rs] for t, rs in self.exact.items()
        }

    def filters(self) -> list[str]:
        """Subscription filters that cover every route (used when the broker config names none)."""
        out = dict.fromkeys(self.exact)
        for r in self.patterns:
            out[topic_filter(r.concrete)] = None
        return list(out)

    def routes(self, topic: str) -> list[tuple[Route, str | None]]:
        if not self.patterns:
            return self._exact_found.get(topic, [])  # the common case: exact topics only (lists are not modified)
        found: list[tuple[Route, str | None]] = list(self._exact_found.get(topic, ()))
        for r in self.patterns:
            assert r.pattern is not None
            m = r.pattern.match(topic)
            if m:
                found.append((r, m.group("signal")))
        return found


def _walk(obj: object, path: tuple[str, ...]) -> object:
    for part in path:
        if isinstance(obj, dict):
            if part not in obj:
                return _MISSING
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return _MISSING
    return obj


_MISSING = object()


class Decoder:
    def __init__(self, router: Router, max_payload_bytes: int, bad: BadInput) -> None:
        self.router = router
        self.max_payload_bytes = max_payload_bytes
        self.bad = bad

    def decode(self, topic: str, payload: bytes | bytearray, receive_ns: int) -> list[Reading]:
        routes = self.router.routes(topic)
        if not routes:
            self.bad("unknown_topic", None, topic)
            return []
        if len(payload) > self.max_payload_bytes:
            self.bad("oversized", routes[0][0].machine, f"{topic}: {len(payload)} bytes > {self.max_payload_bytes}")
            return []
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as err:
            self.bad("invalid_utf8", routes[0][0].machine, f"{topic}: {err}")
            return []
        out: list[Reading] = []
        for route, signal in routes:
            if route.topic.format == "json":
                out.extend(self._json(route, topic, text, receive_ns))
            else:
                out.extend(self._number(route, signal, topic, text, receive_ns))
        return out

    def _json(self, route: Route, topic: str, text: str, receive_ns: int) -> list[Reading]:
        try:
            doc = _STRICT_JSON.decode(text)
        except _NonFinite:
            # NaN/Infinity literals: decode again keeping them, so the other fields still land
            doc = json.loads(text)
        except ValueError as err:
            self.bad("malformed_json", route.machine, f"{topic}: {err}")
            return []
        if not isinstance(doc, dict):
            self.bad("malformed_json", route.machine, f"{topic}: payload is {type(doc).__name__}, not an object")
            return []
        ts = receive_ns
        if route.ts_path is not None:
            raw_ts = _walk(doc, route.ts_path)
            parsed = self._timestamp(raw_ts, route)
            if parsed is not None:
                ts = parsed
            else:  # the values are still good: they are kept with the receive time
                why = "missing_timestamp" if raw_ts is _MISSING else "bad_timestamp"
                self.bad(why, route.machine, f"{topic}: {'.'.join(route.ts_path)}={str(raw_ts)[:40]!r}")
        out: list[Reading] = []
        for s in route.signals:
            raw = _walk(doc, s.path)
            if raw is _MISSING:
                continue  # a device may omit fields it has nothing to say about
            value = convert(raw, s.settings)
            if isinstance(value, BadValue):
                self.bad(value.reason, route.machine, f"{topic}: {s.name}={str(raw)[:40]!r}")
                continue
            r = Reading(route.machine, s.name, value, s.settings.unit, Quality.GOOD, ts, receive_ns)
            if s.deadband is None or s.deadband.passes(r):
                out.append(r)
        return out

    def _number(self, route: Route, signal: str | None, topic: str, text: str, receive_ns: int) -> list[Reading]:
        name = signal or route.topic.signal or ""
        x = convert(text, _NUMBER)
        if isinstance(x, BadValue):
            self.bad(x.reason, route.machine, f"{topic}: {text[:40]!r}")
            return []
        return [Reading(route.machine, name, x, route.units.get(name), Quality.GOOD, receive_ns, receive_ns)]

    @staticmethod
    def _timestamp(raw: object, route: Route) -> int | None:
        if raw is _MISSING or raw is None or isinstance(raw, bool):
            return None
        if route.ts_iso:
            if not isinstance(raw, str):
                return None
            try:
                dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                return None
            if dt.tzinfo is None:
                return None
            return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
        if isinstance(raw, (int, float)) and math.isfinite(raw):
            return int(raw * route.ts_div) if isinstance(raw, float) else raw * route.ts_div
        return None


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


# one decoder for every message (json.loads with an argument builds a new decoder for each call)
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)
