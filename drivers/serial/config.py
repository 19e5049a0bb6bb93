"""Configuration of machines read over a serial port: Marlin-family printers and line-based instruments."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import MachineBase, Strict
from gateway.signals import SignalSettings

COMMON_BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 250000, 460800, 500000, 921600, 1000000)
TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
TEMPLATE_TYPES = {
    "number": r"[-+]?\s*(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?",
    "int": r"[-+]?\s*\d+",
    "word": r"\S+",
    "text": r".*?",
}


def template_to_regex(template: str) -> str:
    """Turn `{status},{mode},{weight:number} {unit}` into a regex with named groups.

    `{name}` matches one word, `{name:number}` a signed decimal (a space after the sign is allowed, as balances
    print it), `{name:int}` a whole number, `{name:text}` anything; a space matches any run of spaces (or none);
    everything else matches literally.
    """
    out = ["^"]
    pos = 0
    for m in TEMPLATE_FIELD.finditer(template):
        out.append(_literal(template[pos:m.start()]))
        kind = m.group(2) or "word"
        if kind not in TEMPLATE_TYPES:
            raise ValueError(f"uses {{{m.group(1)}:{kind}}}; the types are {', '.join(TEMPLATE_TYPES)}")
        out.append(f"(?P<{m.group(1)}>{TEMPLATE_TYPES[kind]})")
        pos = m.end()
    out.append(_literal(template[pos:]))
    out.append("$")
    return "".join(out)


def _literal(text: str) -> str:
    return r"\s*".join(re.escape(part) for part in text.split(" "))


class PrinterOptions(Strict):
    """How a Marlin-family printer (Marlin, Prusa firmware, Klipper's serial emulation) is read."""

    poll_interval_s: float = Field(
        default=2.0, ge=0.2, le=300, description="How often job status (M27, M27 C, M31) is asked for."
    )
    temperature_report: Literal["auto", "poll"] = Field(
        default="auto",
        description="auto: ask the firmware to report temperatures by itself (M155) when M115 says it can, "
        "else poll with M105; poll: always poll with M105.",
    )
    temperature_interval_s: int = Field(
        default=2, ge=1, le=60, description="Seconds between temperature reports (M155 S<n>, or M105 polls)."
    )
    stats_interval_s: float = Field(
        default=60.0, ge=5, description="How often the print counter (M78: total print time, filament used) is "
        "read, when the firmware has one."
    )
    response_timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="A command whose `ok` has not come this long after the last `busy:` keep-alive counts as lost; "
        "it stays in flight while the driver listens as long again for a late `ok` (twice as long after each "
        "further loss, up to 2 minutes) before sending the next: never more than one command in flight.",
    )
    silence_timeout_s: float = Field(
        default=15.0, gt=0, le=3600,
        description="Nothing at all received for this long = the firmware stopped answering: the machine is shown "
        "offline and the port is reopened.",
    )
    heater_power_full_scale: int = Field(
        default=127, ge=1, le=65535,
        description="Value of `@:` / `B@:` at full heater power (127 on Marlin and Prusa firmware).",
    )


class InstrumentField(SignalSettings):
    """One signal taken from a named group of the line pattern; how its text is read is shared by every driver."""

    group: str | None = Field(default=None, description="Named group of the pattern; default: the signal name.")

    @model_validator(mode="before")
    @classmethod
    def _true_values(cls, data: Any) -> Any:
        if isinstance(data, dict) and "true_values" in data:
            raise ValueError(
                "true_values was replaced by map, which names both answers, e.g. map: {ST: true, US: false}; "
                "text that is neither in the map nor a bool word (true/false, on/off, yes/no, 1/0) is now counted "
                "as bad input instead of read as false")
        return data


class InstrumentMessage(Strict):
    """One kind of line the instrument sends, and (for polled instruments) the request that makes it send it."""

    request: str | None = Field(
        default=None,
        description="Text sent to ask for this line (e.g. SI for a balance, MEAS:TEMP? for SCPI); "
        "leave out for lines the instrument sends by itself (free-running stream).",
    )
    pattern: str | None = Field(
        default=None, description="Regular expression with named groups, e.g. ^(?P<weight>[-+0-9.]+) g$."
    )
    template: str | None = Field(
        default=None,
        description="Simpler than a pattern: {name} is a word, {name:number} a number, {name:int}, {name:text}; "
        "a space matches any spaces, e.g. '{status},{mode},{weight:number} {unit}'.",
    )
    fields: dict[str, InstrumentField] = Field(
        min_length=1, description="Signal name -> which group it is read from, its type and unit."
    )

    @field_validator("request")
    @classmethod
    def _request(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\n" in v or "\r" in v):
            raise ValueError("must be one line of text; the line ending is added from `line_ending`")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            re.compile(v)
        except re.error as err:
            raise ValueError(f"is not a valid regular expression: {err}") from err
        return v

    @field_validator("template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            if not TEMPLATE_FIELD.search(v):
                raise ValueError("has no {name} placeholder; e.g. '{weight:number} {unit}'")
            template_to_regex(v)
        return v

    @model_validator(mode="after")
    def _groups(self) -> InstrumentMessage:
        if (self.pattern is None) == (self.template is None):
            raise ValueError("give either `pattern` (a regular expression) or `template`, not both or neither")
        regex = self.regex()
        have = set(re.compile(regex).groupindex)
        for name, f in self.fields.items():
            group = f.group or name
            if group not in have:
                where = "pattern" if self.pattern is not None else "template"
                known = ", ".join(sorted(have)) if have else "none"
                raise ValueError(
                    f'field "{name}" needs the named group "{group}", which the {where} does not have '
                    f"(its groups: {known}); add (?P<{group}>...) or set `group:`"
                )
        return self

    def regex(self) -> str:
        if self.pattern is not None:
            return self.pattern
        assert self.template is not None
        return template_to_regex(self.template)


class InstrumentOptions(Strict):
    """How a line-based instrument (balance, SCPI meter, analyser) is read."""

    poll_interval_s: float = Field(
        default=1.0, ge=0.05, le=3600, description="How often each request is sent (polled messages)."
    )
    response_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="How long to wait for the answer to a request before the next one."
    )
    silence_timeout_s: float | None = Field(
        default=None, gt=0,
        description="Nothing received for this long = the instrument is gone: shown offline and the port reopened. "
        "Default: 5 x poll_interval_s for polled instruments, none for a free-running stream.",
    )
    messages: list[InstrumentMessage] = Field(min_length=1, description="The lines the instrument sends.")


class SerialMachine(MachineBase):
    """A machine on a serial port (USB or RS-232): a Marlin-family 3D printer or a line-based instrument."""

    driver: Literal["serial"] = Field(description="serial")
    port: str = Field(
        description="Serial device. Use the stable /dev/serial/by-id/... link, not /dev/ttyUSB0 or /dev/ttyACM0, "
        "whose numbers change when devices are replugged."
    )
    baud_rate: int = Field(
        default=115200, ge=50, le=4_000_000,
        description="Bits per second: 115200 for most printers (250000 on some Marlin builds), 9600 for balances.",
    )
    data_bits: Literal[5, 6, 7, 8] = Field(default=8, description="Data bits per character.")
    parity: Literal["none", "even", "odd", "mark", "space"] = Field(default="none", description="Parity bit.")
    stop_bits: float = Field(default=1, description="Stop bits: 1, 1.5 or 2.")
    line_ending: Literal["lf", "crlf", "cr"] = Field(
        default="lf", description="Line ending added to what the gateway sends (lines it receives may end in any)."
    )
    encoding: Literal["ascii", "utf-8", "latin-1"] = Field(
        default="utf-8", description="Text encoding of the lines (bytes that do not decode are counted as bad input)."
    )
    max_line_bytes: int = Field(
        default=1024, ge=16, le=65536, description="Longer lines are counted as over-long and skipped."
    )
    protocol: Literal["marlin", "lines"] = Field(
        description="marlin: a Marlin-family printer (Marlin, Prusa firmware, Klipper); lines: an instrument that "
        "sends text lines, polled or free-running."
    )
    printer: PrinterOptions | None = Field(
        default=None, description="protocol marlin: polling and timeouts (all optional)."
    )
    instrument: InstrumentOptions | None = Field(
        default=None, description="protocol lines: requests and how fields are read from the lines."
    )

    @field_validator("port")
    @classmethod
    def _port(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is empty; use e.g. /dev/serial/by-id/usb-Prusa_Research_Original_Prusa_i3_MK3-if00")
        if re.match(r"^(opc\.tcp|mqtt|tcp|https?)://", v):
            raise ValueError("is a network address, not a serial device; use e.g. /dev/serial/by-id/...")
        return v

    @field_validator("stop_bits")
    @classmethod
    def _stop_bits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError("is not a number of stop bits; use 1, 1.5 or 2")
        return v

    @model_validator(mode="after")
    def _sections(self) -> SerialMachine:
        if self.protocol == "marlin" and self.instrument is not None:
            raise ValueError("protocol marlin takes a `printer:` section, not `instrument:`")
        if self.protocol == "lines":
            if self.printer is not None:
                raise ValueError("protocol lines takes an `instrument:` section, not `printer:`")
            if self.instrument is None:
                raise ValueError("protocol lines needs an `instrument:` section with `messages:`")
        return self

    def printer_options(self) -> PrinterOptions:
        return self.printer or PrinterOptions()
