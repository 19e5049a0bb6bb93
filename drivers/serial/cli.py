"""`kartech serial probe PORT`: find the baud rate, identify Marlin-family firmware, print a YAML block to paste.

Only read-only questions are asked (M110, M115, and for instruments nothing at all): the probe listens first, then
asks M115 at each candidate rate. It opens the port like the driver does (exclusive, DTR low: no board reset).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import serial

from drivers.serial import marlin
from drivers.serial.transport import Bad, Line, LineSplitter, PortSettings, open_port
from gateway.errors import DriverUnavailable

PROBE_BAUDS = (115200, 250000, 9600, 57600, 19200, 38400, 230400, 500000)


@dataclass
class ProbeResult:
    baud_rate: int
    lines: list[str] = field(default_factory=list)
    bad: int = 0
    firmware: marlin.Firmware | None = None
    capabilities: dict[str, bool] = field(default_factory=dict)

    @property
    def score(self) -> int:
        return (1000 if self.firmware else 0) + len(self.lines) * 10 - self.bad * 10


def probe_rate(port: str, baud: int, *, listen_s: float, answer_s: float) -> ProbeResult:
    result = ProbeResult(baud)
    ser = open_port(PortSettings(port=port, baud_rate=baud))
    splitter = LineSplitter()
    try:
        def collect(seconds: float, until_ok: bool = False) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                data = ser.read(4096)
                if not data:
                    time.sleep(0.02)
                    continue
                for item in splitter.feed(data, time.monotonic()):
                    if isinstance(item, Bad):
                        result.bad += 1
                    elif isinstance(item, Line):
                        result.lines.append(item.text)
                        for msg in marlin.parse_line(item.text):
                            if isinstance(msg, marlin.Firmware):
                                result.firmware = msg
                            elif isinstance(msg, marlin.Capability):
                                result.capabilities[msg.name] = msg.enabled
                            elif isinstance(msg, marlin.Ok) and until_ok and result.firmware is not None:
                                return

        collect(listen_s)
        for command in (marlin.numbered(0, "M110 N0"), marlin.numbered(1, "M115")):
            ser.write(command.encode("ascii") + b"\n")
            ser.flush()
            collect(answer_s, until_ok=True)
            if result.firmware is not None:
                break
    finally:
        ser.close()
    return result


def yaml_block(port: str, best: ProbeResult) -> str:
    mid = re.sub(r"[^a-z0-9]+", "-", Path(port).name.lower()).strip("-")[:40] or "machine"
    if best.firmware is not None:
        fw = best.firmware
        name = fw.machine_type or f"{fw.name} printer"
        auto = "auto" if best.capabilities.get("AUTOREPORT_TEMP") else "poll"
        return (f"  - id: {mid}\n    name: {name}\n    kind: printer\n    driver: serial\n"
                f"    port: {port}\n    baud_rate: {best.baud_rate}\n    protocol: marlin\n"
                f"    printer:\n      temperature_report: {auto}   # {fw.name} {fw.version}\n"
                f"      poll_interval_s: 2\n")
    sample = best.lines[0] if best.lines else "<a line the instrument sends>"
    return (f"  - id: {mid}\n    name: Instrument on {Path(port).name}\n    kind: analyser\n    driver: serial\n"
            f"    port: {port}\n    baud_rate: {best.baud_rate}\n    protocol: lines\n    instrument:\n"
            f"      messages:\n        # first line received: {sample!r}\n"
            f"        - template: \"{{value:number}} {{unit}}\"\n          fields:\n            value: {{}}\n")


def cmd_probe(args: argparse.Namespace) -> int:
    rates = [args.baud] if args.baud else list(PROBE_BAUDS)
    results: list[ProbeResult] = []
    for baud in rates:
        try:
            r = probe_rate(args.port, baud, listen_s=args.listen, answer_s=args.answer)
        except DriverUnavailable as err:
            print(f"cannot probe: {err}", file=sys.stderr)
            return 1
        except serial.SerialException as err:
            print(f"{baud:>7} baud: {err}", file=sys.stderr)
            continue
        results.append(r)
        fw = f" — {r.firmware.name} {r.firmware.version}" if r.firmware else ""
        print(f"{baud:>7} baud: {len(r.lines)} text lines, {r.bad} garbled{fw}", flush=True)
        if r.firmware is not None:
            break
    useful = [r for r in results if r.lines or r.firmware]
    if not useful:
        print(f"\nNothing readable from {args.port} at {', '.join(map(str, rates))} baud. Is the device on? "
              "Does it only answer requests (then try `--listen` longer with the instrument set to stream)?")
        return 2
    best = max(useful, key=lambda r: r.score)
    if best.firmware is not None:
        found = best.firmware
        print(f"\nFound {found.name} {found.version}"
              + (f" on a {found.machine_type}" if found.machine_type else "")
              + f" at {best.baud_rate} baud.")
        caps = ", ".join(k for k, v in sorted(best.capabilities.items()) if v)
        if caps:
            print(f"Capabilities: {caps}")
    else:
        print(f"\nNo Marlin-family firmware answered; at {best.baud_rate} baud the first lines were:")
        for line in best.lines[:5]:
            print(f"  {line}")
    print("\nPaste under machines: in your site file (and check it with kartech check-config):\n")
    print(yaml_block(args.port, best))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serial", help="serial ports: find and identify printers and instruments")
    ss = s.add_subparsers(dest="serial_command", required=True)
    p = ss.add_parser("probe", help="try common baud rates, identify Marlin-family firmware, print a YAML block")
    p.add_argument("port", help="serial device, e.g. /dev/serial/by-id/usb-...")
    p.add_argument("--baud", type=int, default=None, help="try only this baud rate")
    p.add_argument("--listen", type=float, default=1.5, help="seconds to listen before asking (default 1.5)")
    p.add_argument("--answer", type=float, default=2.0, help="seconds to wait for an answer (default 2)")
    p.set_defaults(func=cmd_probe)
