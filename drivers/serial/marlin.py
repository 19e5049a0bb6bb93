"""Marlin-family serial protocol: what the host sends (numbered, checksummed, read-only) and what the firmware says.

Covers Marlin 1.1/2.x, Prusa firmware (Marlin-based, with its own M73 progress echo) and Klipper's
serial-compatible replies (`ok` first, `//` messages, `!!` errors, T0 instead of T). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Everything the driver may ever send. None of these moves an axis, heats, or touches a file:
# M110 sets the line number, M115 asks for the firmware, M155 S<n> sets the temperature auto-report interval,
# M105 asks for temperatures, M27 for SD progress, M27 C for the open file, M31 for the print time, M78 for the
# print counter.
READ_ONLY_COMMANDS = frozenset({"M110", "M115", "M155", "M105", "M27", "M31", "M78"})
_COMMAND = re.compile(r"^(M\d+)(?:\s+([A-Z][-0-9.]*))*\s*$")
_ALLOWED_ARGS = {"M110": re.compile(r"^N\d+$"), "M155": re.compile(r"^S\d+$"), "M27": re.compile(r"^C$")}


def is_read_only(command: str) -> bool:
    """True for a bare command in the read-only set, with only the arguments listed above."""
    m = _COMMAND.match(command.strip())
    if not m or m.group(1) not in READ_ONLY_COMMANDS:
        return False
    args = command.split()[1:]
    allowed = _ALLOWED_ARGS.get(m.group(1))
    if not args:
        return True
    return allowed is not None and len(args) == 1 and bool(allowed.match(args[0]))


def checksum(text: str) -> int:
    """Marlin's line checksum: XOR of every byte before the '*'."""
    cs = 0
    for b in text.encode("ascii"):
        cs ^= b
    return cs


def numbered(n: int, command: str) -> str:
    """`N<n> <command>*<checksum>`, the form Marlin checks for lost or corrupted characters."""
    body = f"N{n} {command}"
    return f"{body}*{checksum(body)}"


def unnumber(line: str) -> tuple[int | None, str, bool]:
    """Split a received host line into (line number, command, checksum ok) — for simulators and tests."""
    line = line.strip()
    m = re.match(r"^N(\d+)\s+(.*?)\*(\d+)$", line)
    if not m:
        return None, line, True
    body = line[: line.rindex("*")]
    return int(m.group(1)), m.group(2).strip(), checksum(body) == int(m.group(3))


# --- what the firmware says ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ok:
    rest: str = ""


@dataclass(frozen=True, slots=True)
class Temps:
    nozzle: float | None = None
    nozzle_target: float | None = None
    bed: float | None = None
    bed_target: float | None = None
    chamber: float | None = None
    nozzle_power: int | None = None
    bed_power: int | None = None


@dataclass(frozen=True, slots=True)
class SdProgress:
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class NotPrinting:
    pass


@dataclass(frozen=True, slots=True)
class CurrentFile:
    name: str | None  # None: no file open


@dataclass(frozen=True, slots=True)
class FileOpened:
    name: str
    size: int | None


@dataclass(frozen=True, slots=True)
class DonePrinting:
    pass


@dataclass(frozen=True, slots=True)
class PrintTime:
    seconds: int


@dataclass(frozen=True, slots=True)
class PrusaProgress:
    percent: float
    remaining_s: int | None


@dataclass(frozen=True, slots=True)
class Busy:
    reason: str


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    argument: str


@dataclass(frozen=True, slots=True)
class FirmwareError:
    text: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class Resend:
    line: int


@dataclass(frozen=True, slots=True)
class Firmware:
    name: str
    version: str
    machine_type: str | None
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class Stats:
    print_time_s: int | None = None
    filament_m: float | None = None
    prints: int | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    command: str


@dataclass(frozen=True, slots=True)
class Started:
    """The firmware (re)booted."""


@dataclass(frozen=True, slots=True)
class Echo:
    text: str


Message = (Ok | Temps | SdProgress | NotPrinting | CurrentFile | FileOpened | DonePrinting | PrintTime |
           PrusaProgress | Busy | Action | FirmwareError | Resend | Firmware | Capability | Stats | Unknown |
           Started | Echo)

_NUM = r"-?\d+(?:\.\d+)?"
_HEATER = re.compile(rf"(?<![A-Za-z@])(T\d?|B|C)\s*:\s*({_NUM})(?:\s*/\s*({_NUM}))?")
_POWER = re.compile(r"(?<![A-Za-z])(B)?@\d?\s*:\s*(-?\d+)")
_SD_BYTE = re.compile(r"SD printing byte\s+(\d+)\s*/\s*(\d+)")
_FILE_OPENED = re.compile(r"File opened:\s*(.+?)(?:\s+Size:\s*(\d+))?\s*$")
_CURRENT = re.compile(r"Current file:\s*(.*?)\s*$")
_DURATION = re.compile(r"^\s*(?:(\d+)y\s*)?(?:(\d+)d\s*)?(?:(\d+)h\s*)?(?:(\d+)m(?:in)?\s*)?(?:(\d+)s\s*)?$")
_PRUSA_M73 = re.compile(r"Percent done:\s*(-?\d+);\s*print time remaining in mins:\s*(-?\d+)")
_PRUSA_TIME = re.compile(r"^(\d+)\s*min,\s*(\d+)\s*sec$")
_RESEND = re.compile(r"^(?:Resend|rs)\s*:?\s*N?(\d+)", re.IGNORECASE)
_FW_KEY = re.compile(r"([A-Z_]+):")
_UNKNOWN = re.compile(r'Unknown command:\s*"?([^"]*)"?', re.IGNORECASE)
_FATAL = ("kill", "halted", "thermal runaway", "heating failed", "maxtemp", "mintemp", "stopped", "shutdown",
          "thermal malfunction", "emergency")


def parse_duration(text: str) -> int | None:
    """Marlin's duration_t text ("1d 2h 3m 4s", "5m 0s") in seconds."""
    text = text.strip()
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        m2 = _PRUSA_TIME.match(text)
        return int(m2.group(1)) * 60 + int(m2.group(2)) if m2 else None
    y, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return (((y * 365 + d) * 24 + h) * 60 + mi) * 60 + s


def parse_temps(text: str) -> Temps | None:
    heaters = {k: (float(v), float(t) if t else None) for k, v, t in _HEATER.findall(text)}
    if not heaters:
        return None
    nozzle = heaters.get("T") or heaters.get("T0")
    bed = heaters.get("B")
    chamber = heaters.get("C")
    nozzle_power = bed_power = None
    for is_bed, value in _POWER.findall(text):
        if is_bed:
            bed_power = int(value)
        elif nozzle_power is None:
            nozzle_power = int(value)
    return Temps(
        nozzle=nozzle[0] if nozzle else None, nozzle_target=nozzle[1] if nozzle else None,
        bed=bed[0] if bed else None, bed_target=bed[1] if bed else None,
        chamber=chamber[0] if chamber else None, nozzle_power=nozzle_power, bed_power=bed_power,
    )


_DOS_NAME = re.compile(r"^[A-Z0-9_~$!#%&'()@^{}-]{1,8}\.[A-Z0-9]{1,3}$")


def long_name(text: str) -> str | None:
    """M27 C prints the DOS 8.3 name, then the long name when the firmware knows it: keep the long one."""
    text = text.strip()
    if text in ("(no file)", ""):
        return None
    short, _, rest = text.partition(" ")
    return rest.strip() if rest.strip() and _DOS_NAME.match(short) else text


def parse_firmware(text: str) -> Firmware:
    """M115's first line: KEY:value pairs whose values may contain spaces (FIRMWARE_NAME:Marlin 2.1.2 (...))."""
    keys = list(_FW_KEY.finditer(text))
    fields: dict[str, str] = {}
    for i, k in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
        fields[k.group(1)] = text[k.end():end].strip()
    raw = fields.get("FIRMWARE_NAME", "")
    name, _, rest = raw.partition(" ")
    version = fields.get("FIRMWARE_VERSION") or rest.split(" (")[0].strip()
    if name.startswith("Prusa-Firmware"):
        name = "Prusa-Firmware"
        version = rest.split(" ")[0] if rest else version
    return Firmware(name=name or "unknown", version=version, machine_type=fields.get("MACHINE_TYPE") or None,
                    fields=fields)


def parse_line(line: str) -> list[Message]:
    """Everything one received line says (Klipper puts `ok` and its answer on one line, hence a list)."""
    text = line.strip()
    out: list[Message] = []
    if text == "ok" or text.startswith(("ok ", "ok:")):
        out.append(Ok(text[2:].strip()))
        text = text[2:].strip()
        if not text or re.fullmatch(r"N?\d+", text):
            return out
    if text.startswith("!!"):  # Klipper
        body = text[2:].strip()
        return [*out, FirmwareError(body, any(w in body.lower() for w in _FATAL))]
    if text.startswith("//"):
        body = text[2:].strip()
        if body.startswith("action:"):
            name, _, arg = body[len("action:"):].partition(" ")
            return [*out, Action(name.strip(), arg.strip())]
        return [*out, *_parse_text(body, klipper_comment=True)]
    return out + _parse_text(text)


def _parse_text(text: str, *, klipper_comment: bool = False) -> list[Message]:
    body = text
    for prefix in ("echo:", "Echo:"):
        if body.startswith(prefix):
            body = body[len(prefix):].strip()
            break
    low = body.lower()
    if m := _RESEND.match(body):
        return [Resend(int(m.group(1)))]
    if low.startswith("error:"):
        msg = body[6:].strip()
        if re.match(r"(line number is not|checksum mismatch|no checksum|no line number)", msg, re.IGNORECASE):
            return [FirmwareError(msg, False)]
        return [FirmwareError(msg, any(w in msg.lower() for w in _FATAL))]
    if low.startswith("busy:"):
        return [Busy(body[5:].strip())]
    if body.startswith("FIRMWARE_NAME:") or " FIRMWARE_NAME:" in body:
        return [parse_firmware(body)]
    if body.startswith("Cap:"):
        name, _, flag = body[4:].rpartition(":")
        return [Capability(name, flag.strip() == "1")]
    if m := _SD_BYTE.search(body):
        return [SdProgress(int(m.group(1)), int(m.group(2)))]
    if low.startswith("not sd printing"):
        return [NotPrinting()]
    if m := _CURRENT.match(body):
        return [CurrentFile(long_name(m.group(1)))]
    if m := _FILE_OPENED.match(body):
        return [FileOpened(m.group(1), int(m.group(2)) if m.group(2) else None)]
    if low.startswith("done printing file"):
        return [DonePrinting()]
    if low.startswith("print time:"):
        secs = parse_duration(body.split(":", 1)[1])
        return [PrintTime(secs)] if secs is not None else [Echo(body)]
    if m := _PRUSA_M73.search(body):
        remaining = int(m.group(2))
        return [PrusaProgress(float(m.group(1)), remaining * 60 if remaining >= 0 else None)]
    if body.startswith("Stats:"):
        return [_parse_stats(body[6:].strip())]
    if m := _UNKNOWN.search(body):
        return [Unknown(m.group(1).strip())]
    if body == "start":  # `echo:start` from Marlin 2.0.6 to 2.0.8; the banner's "Marlin 2.x" line is only an echo
        return [Started()]
    temps = parse_temps(body)
    if temps is not None and (body.startswith(("T", "B", "C")) or "T:" in body or "T0:" in body):
        return [temps]
    return [Echo(body)]


def _parse_stats(body: str) -> Stats:
    if m := re.match(r"Prints:\s*(\d+)", body):
        return Stats(prints=int(m.group(1)))
    if m := re.match(r"Total time:\s*([^,]+)", body):
        return Stats(print_time_s=parse_duration(m.group(1)))
    if m := re.match(r"Filament used:\s*([\d.]+)\s*m", body):
        return Stats(filament_m=float(m.group(1)))
    return Stats()
