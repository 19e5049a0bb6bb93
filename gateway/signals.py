"""What every driver does with a raw value: the shared signal settings and the one conversion rule set.

A driver finds the raw value (a JSON field, an OPC UA Variant, a group of a serial line) and hands it to
`convert(raw, settings)`, which returns the reading's value or a `BadValue` whose `reason` the driver counts
through `ctx.bad_input(reason, machine, detail)`. The rules, in order:

1. `map` first: a raw value whose text is a key of the map becomes the mapped value as written (not scaled).
2. Then by type:
   - float: a number or numeric text, times `scale` plus `offset`;
   - int: the same, and the result must be whole (a fraction is refused, never rounded);
   - bool: true/false, on/off, yes/no, 1/0 (any case, as text or number);
   - string: text as it came (a number becomes its text); a string signal's text not in `map` passes unchanged.
3. Refused, with a reason, never guessed: NaN and infinity (`non_finite`), text that is not a number
   (`not_a_number`) or not one of the bool words (`not_a_bool`), a fraction for int (`not_an_integer`), null
   (`null_value`), a list or object (`wrong_type`), text longer than `MAX_TEXT` characters (`text_too_long`).

`Deadband` decides whether a new number differs enough from the last one passed on (OPC UA's absolute deadband).

No I/O; depends only on the reading record, the unit names and the config base, so drivers import it alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import Strict
from gateway.reading import Quality, Reading, Value
from gateway.units import Unit

SignalType = Literal["float", "int", "bool", "string"]
SignalKind = Literal["auto", "float", "int", "bool", "string"]
TYPE_HELP = (
    "Value type: float, int, bool or string; auto (OPC UA only, its default) takes it from the node's data type at "
    "the first connect (numbers -> float, or int when not scaled; Boolean -> bool; text and enumerations -> "
    "string). A signal keeps one type for life; a value that does not fit is counted as bad input, never guessed: "
    "int refuses a fraction (no rounding), bool takes true/false, on/off, yes/no, 1/0."
)
MapValue = str | bool | int | float

MAX_TEXT = 1024  # characters of one string value
TRUE_WORDS = frozenset({"true", "on", "yes", "1"})
FALSE_WORDS = frozenset({"false", "off", "no", "0"})


# how a driver counts bad input: (reason, machine or None, detail), as `ctx.bad_input` takes it
BadInput = Callable[[str, str | None, str], None]


@dataclass(frozen=True, slots=True)
class BadValue:
    """A raw value that cannot be read as configured; `reason` is a stable name (a metric label)."""

    reason: str


NOT_A_NUMBER = BadValue("not_a_number")
NOT_A_BOOL = BadValue("not_a_bool")
NOT_AN_INTEGER = BadValue("not_an_integer")
NON_FINITE = BadValue("non_finite")
NULL_VALUE = BadValue("null_value")
WRONG_TYPE = BadValue("wrong_type")
TEXT_TOO_LONG = BadValue("text_too_long")


class SignalSettings(Strict):
    """How one signal's raw value becomes a reading: the same keys and rules for every driver."""

    auto_type: ClassVar[bool] = False  # a driver whose source declares data types allows type auto

    type: SignalKind = Field(default="float", description=TYPE_HELP)
    unit: Unit | None = Field(default=None, description="Unit of the value after scaling (e.g. degC, W, %, rpm).")
    scale: float = Field(
        default=1.0, allow_inf_nan=False, description="Numbers only: multiply the raw value by this ..."
    )
    offset: float = Field(
        default=0.0, allow_inf_nan=False, description="... then add this (value = raw x scale + offset)."
    )
    map: dict[str, MapValue] | None = Field(
        default=None,
        description="Translate raw values before anything else, e.g. {ST: true, US: false} for a bool or "
        "{Executing: running} for a string (an enumeration by its name). Keys are the raw text (a number matches "
        "its digits); values are of the signal's type and are not scaled. Values not listed are converted as "
        "usual (a string passes unchanged). Machine states are derived in the site's state rules, not here.",
    )
    deadband: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="Numbers only: report a value only when it differs from the last reported one by more than "
        "this (in the value's unit; 0 = changes only). The value is still repeated every expected_interval_s, so "
        "a steady machine stays online.",
    )

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if v == 0:
            raise ValueError("is 0, which makes every value equal to offset; leave scale out for 1")
        return v

    @field_validator("map", mode="before")
    @classmethod
    def _map_keys(cls, v: object) -> object:
        """YAML reads `0:` and `true:` as a number and a bool: keys are text, as the raw value is matched."""
        if isinstance(v, dict):
            return {_key(k) if isinstance(k, (bool, int, float)) else k: x for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SignalSettings:
        if self.type == "auto" and not self.auto_type:
            raise ValueError("type auto needs a source that declares its data type (OPC UA); use float, int, "
                             "bool or string")
        numeric = self.type in ("auto", "float", "int")
        if not numeric and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset apply to numbers; a {self.type} signal cannot be scaled")
        if not numeric and self.deadband is not None:
            raise ValueError(f"deadband applies to numbers; a {self.type} signal is reported on every value")
        for key, value in (self.map or {}).items():
            if not _fits(value, self.type):
                want = {"auto": "text (type auto maps enumeration and string values)", "string": "text",
                        "bool": "true or false", "int": "a whole number", "float": "a number"}[self.type]
                raise ValueError(f"map: {key!r} -> {value!r} does not fit type {self.type}; map to {want}")
        return self


def _fits(value: MapValue, kind: str) -> bool:
    if kind in ("auto", "string"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind == "float" or isinstance(value, int)


def _key(raw: object) -> str | None:
    """The map key a raw value matches: text as it is, a number by its digits (1.0 as "1"), a bool as true/false."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return _digits(raw)
    if isinstance(raw, float) and math.isfinite(raw):
        return _digits(int(raw)) if raw.is_integer() else repr(raw)
    return None


def _digits(n: int) -> str | None:
    try:
        return str(n)
    except ValueError:  # more digits than Python converts (4300): no key or text has that many
        return None


def convert(raw: object, settings: SignalSettings, kind: str | None = None) -> Value | BadValue:
    """The value of `raw` under `settings`, or why it cannot be read. `kind` is the type resolved from the source
    when `settings.type` is auto (OPC UA); auto left unresolved reads as float."""
    t = kind or settings.type
    if settings.map is not None:
        key = _key(raw)
        if key is not None and key in settings.map:
            mapped = settings.map[key]
            if t == "float" and type(mapped) is int:
                return float(mapped)
            if _fits(mapped, t):  # an auto signal's text map does not apply once the node turned out numeric
                return mapped
    if raw is None:
        return NULL_VALUE
    if t == "string":
        return _text(raw)
    if t == "bool":
        return _bool(raw)
    return _number(raw, settings, t == "int")


def _number(raw: object, s: SignalSettings, whole: bool) -> Value | BadValue:
    if type(raw) is float or type(raw) is int:  # the common case first; bool is an int, and not a number here
        x: int | float = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if "_" in text:  # Python reads 1_000 as a number; no instrument means that
            return NOT_A_NUMBER
        try:
            x = int(text) if whole else float(text)
        except ValueError:
            try:
                x = float(text)
            except ValueError:
                return NOT_A_NUMBER
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        x = int(raw) if isinstance(raw, int) else float(raw)
    else:
        return NOT_A_NUMBER
    if whole and isinstance(x, int) and s.scale == 1.0 and s.offset == 0.0:
        return x  # exact, however large
    try:
        y = float(x) * s.scale + s.offset
    except OverflowError:  # an integer beyond the float range
        return NON_FINITE
    if not math.isfinite(y):
        return NON_FINITE
    if whole:
        return int(y) if y.is_integer() else NOT_AN_INTEGER
    return y


def _bool(raw: object) -> Value | BadValue:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)):
        return bool(raw) if raw in (0, 1) else NOT_A_BOOL
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return NOT_A_BOOL


def _text(raw: object) -> Value | BadValue:
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, int):
        digits = _digits(raw)
        if digits is None:
            return TEXT_TOO_LONG
        text = digits
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            return NON_FINITE
        text = repr(raw)
    else:
        return WRONG_TYPE
    return text if len(text) <= MAX_TEXT else TEXT_TOO_LONG


class Deadband:
    """Whether a new reading of one signal is worth passing on (OPC UA absolute deadband semantics).

    A number passes when it differs from the last one passed on by more than `deadband`; anything else (the
    first reading, a text or bool value, no value, a change of quality) always passes. So that a steady machine
    is not taken for offline, a reading also passes once `hold_ns` has gone by since the last one passed on.
    """

    __slots__ = ("_last", "_last_ns", "_quality", "deadband", "hold_ns")

    def __init__(self, deadband: float, hold_ns: int) -> None:
        self.deadband = deadband
        self.hold_ns = hold_ns
        self._last: Value = None
        self._last_ns = 0
        self._quality: Quality | None = None

    def passes(self, r: Reading) -> bool:
        v, last = r.value, self._last
        if (r.quality is self._quality and r.receive_ns - self._last_ns < self.hold_ns
                and isinstance(v, (int, float)) and not isinstance(v, bool)
                and isinstance(last, (int, float)) and not isinstance(last, bool)
                and abs(v - last) <= self.deadband):
            return False
        self._last, self._last_ns, self._quality = v, r.receive_ns, r.quality
        return True
