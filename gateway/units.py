"""Units the gateway knows, with the spellings technicians actually type mapped to the canonical one."""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator

CANONICAL = (
    "degC", "degF", "K", "%", "%RH", "W", "kW", "Wh", "kWh", "V", "A", "Hz", "VA", "var", "rpm", "mm", "m", "km",
    "mm/s", "mm/min", "m/min", "g", "kg", "mg", "t", "Pa", "kPa", "MPa", "bar", "mbar", "ppm", "ppb", "ug/m3",
    "s", "ms", "min", "h", "lux", "dB", "m3/h", "l/min", "N", "Nm", "count", "mm3", "cm3", "ml", "l", "pH",
    "uS/cm", "mV", "mA", "kVA", "kvar",
)

ALIASES = {
    "celsius": "degC", "celcius": "degC", "°c": "degC", "c": "degC", "degc": "degC", "deg_c": "degC",
    "fahrenheit": "degF", "°f": "degF", "kelvin": "K", "percent": "%", "pct": "%", "rh": "%RH",
    "watt": "W", "watts": "W", "kilowatt": "kW", "kwh": "kWh", "volt": "V", "volts": "V", "amp": "A",
    "amps": "A", "ampere": "A", "hertz": "Hz", "rev/min": "rpm", "millimetre": "mm", "millimeter": "mm",
    "gram": "g", "grams": "g", "kilogram": "kg", "second": "s", "seconds": "s", "sec": "s", "minute": "min",
    "minutes": "min", "hour": "h", "hours": "h", "µg/m3": "ug/m3", "µg/m³": "ug/m3", "m³/h": "m3/h",
}

_BY_LOWER = {u.lower(): u for u in CANONICAL}


def check_unit(value: str) -> str:
    if value in CANONICAL:
        return value
    low = value.strip().lower()
    hint = ALIASES.get(low) or _BY_LOWER.get(low)
    if hint is None:
        close = difflib.get_close_matches(low, [*ALIASES, *_BY_LOWER], n=1, cutoff=0.6)
        if close:
            hint = ALIASES.get(close[0]) or _BY_LOWER[close[0]]
    if hint is not None:
        raise ValueError(f'is unknown; did you mean "{hint}"?')
    raise ValueError("is unknown; known units: " + ", ".join(CANONICAL))


Unit = Annotated[str, AfterValidator(check_unit)]
