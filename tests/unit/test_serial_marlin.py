"""Marlin-family protocol parsing and the printer model: what each firmware says, and what it becomes."""

from __future__ import annotations

import pytest

from drivers.serial import marlin
from drivers.serial.marlin import parse_line
from drivers.serial.printer import PrinterModel
from gateway.reading import Quality, Reading


def test_checksum_matches_what_marlin_and_octoprint_compute() -> None:
    assert marlin.numbered(0, "M110 N0") == "N0 M110 N0*125"  # the line every OctoPrint log starts with
    assert marlin.numbered(1, "M115") == "N1 M115*39"
    assert marlin.unnumber("N1 M115*39") == (1, "M115", True)
    assert marlin.unnumber("N1 M115*38") == (1, "M115", False)


@pytest.mark.parametrize("command", ["M110 N0", "M115", "M155 S2", "M105", "M27", "M27 C", "M31", "M78"])
def test_read_only_commands_are_allowed(command: str) -> None:
    assert marlin.is_read_only(command)


@pytest.mark.parametrize("command", ["G28", "G1 X10", "M104 S200", "M140 S60", "M24", "M25", "M23 file.gco",
                                     "M30 file.gco", "M112", "M27 S5", "M155 S2 X1", "M999", "M117 hi",
                                     "m105", ""])
def test_everything_else_is_refused(command: str) -> None:
    assert not marlin.is_read_only(command)


def test_marlin_m115_and_capabilities() -> None:
    (fw,) = parse_line("FIRMWARE_NAME:Marlin 2.1.2.1 (Jun 10 2024 12:00:00) SOURCE_CODE_URL:github.com/MarlinFirmware/"
                       "Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 V2 EXTRUDER_COUNT:1 UUID:cede2a2f")
    assert isinstance(fw, marlin.Firmware)
    assert (fw.name, fw.version, fw.machine_type) == ("Marlin", "2.1.2.1", "Ender-3 V2")
    assert parse_line("Cap:AUTOREPORT_TEMP:1") == [marlin.Capability("AUTOREPORT_TEMP", True)]
    assert parse_line("Cap:SDCARD:0") == [marlin.Capability("SDCARD", False)]


def test_prusa_and_klipper_identify_themselves() -> None:
    (fw,) = parse_line("FIRMWARE_NAME:Prusa-Firmware 3.13.3 based on Marlin FIRMWARE_URL:https://github.com/prusa3d/"
                       "Prusa-Firmware PROTOCOL_VERSION:1.0 MACHINE_TYPE:Prusa i3 MK3S EXTRUDER_COUNT:1")
    assert isinstance(fw, marlin.Firmware)
    assert (fw.name, fw.version, fw.machine_type) == ("Prusa-Firmware", "3.13.3", "Prusa i3 MK3S")
    ok, kfw = parse_line("ok FIRMWARE_VERSION:v0.12.0-85-gd785b396 FIRMWARE_NAME:Klipper")
    assert ok == marlin.Ok("FIRMWARE_VERSION:v0.12.0-85-gd785b396 FIRMWARE_NAME:Klipper")
    assert isinstance(kfw, marlin.Firmware)
    assert (kfw.name, kfw.version) == ("Klipper", "v0.12.0-85-gd785b396")


@pytest.mark.parametrize(("line", "expected"), [
    ("ok T:210.00 /215.00 B:59.90 /60.00 @:64 B@:38",
     marlin.Temps(210.0, 215.0, 59.9, 60.0, None, 64, 38)),
    (" T:210.00 /215.00 B:59.90 /60.00 @:64 B@:38",  # M155 auto-report
     marlin.Temps(210.0, 215.0, 59.9, 60.0, None, 64, 38)),
    ("T:215.0 /215.0 B:60.0 /60.0 T0:215.0 /215.0 @:70 B@:40 P:0.0 A:31.9",  # Prusa
     marlin.Temps(215.0, 215.0, 60.0, 60.0, None, 70, 40)),
    ("ok B:60.0 /60.0 T0:215.0 /215.0",  # Klipper: no T, no power
     marlin.Temps(215.0, 215.0, 60.0, 60.0, None, None, None)),
    ("T:200.12 E:0 W:?", marlin.Temps(200.12, None, None, None, None, None, None)),  # M109 wait line
    ("T:210.0/215.0 B:60.0/60.0 C:31.5/0.0 @:90 B@:0", marlin.Temps(210.0, 215.0, 60.0, 60.0, 31.5, 90, 0)),
])
def test_temperature_lines_of_every_firmware(line: str, expected: marlin.Temps) -> None:
    temps = [m for m in parse_line(line) if isinstance(m, marlin.Temps)]
    assert temps == [expected]


@pytest.mark.parametrize(("line", "expected"), [
    ("SD printing byte 1234/56789", [marlin.SdProgress(1234, 56789)]),
    ("Not SD printing", [marlin.NotPrinting()]),
    ("Not SD printing.", [marlin.NotPrinting()]),
    ("Current file: BRACKE~1.GCO bracket_v3.gcode", [marlin.CurrentFile("bracket_v3.gcode")]),
    ("Current file: PART.GCO", [marlin.CurrentFile("PART.GCO")]),
    ("Current file: (no file)", [marlin.CurrentFile(None)]),
    ("File opened: BRACKE~1.GCO Size: 123456", [marlin.FileOpened("BRACKE~1.GCO", 123456)]),
    ("Done printing file", [marlin.DonePrinting()]),
    ("echo:Print time: 1h 2m 3s", [marlin.PrintTime(3723)]),
    ("echo:Print time: 2d 0h 0m 5s", [marlin.PrintTime(172805)]),
    ("NORMAL MODE: Percent done: 45; print time remaining in mins: 23; Change in mins: -1",
     [marlin.PrusaProgress(45.0, 1380)]),
    ("echo:busy: processing", [marlin.Busy("processing")]),
    ("echo:busy: paused for user", [marlin.Busy("paused for user")]),
    ("//action:paused", [marlin.Action("paused", "")]),
    ("//action:prompt_begin FilamentRunout T0", [marlin.Action("prompt_begin", "FilamentRunout T0")]),
    ("Resend: 5", [marlin.Resend(5)]),
    ("rs N7", [marlin.Resend(7)]),
    ("Error:checksum mismatch, Last Line: 4", [marlin.FirmwareError("checksum mismatch, Last Line: 4", False)]),
    ("Error:Thermal Runaway, system stopped! Heater_ID: 0",
     [marlin.FirmwareError("Thermal Runaway, system stopped! Heater_ID: 0", True)]),
    ("Error:Printer halted. kill() called!", [marlin.FirmwareError("Printer halted. kill() called!", True)]),
    ("!! Heater extruder not heating at expected rate",
     [marlin.FirmwareError("Heater extruder not heating at expected rate", False)]),
    ("!! Shutdown due to M112", [marlin.FirmwareError("Shutdown due to M112", True)]),
    ('echo:Unknown command: "M78"', [marlin.Unknown("M78")]),
    ('// Unknown command:"M31"', [marlin.Unknown("M31")]),
    ("Stats: Prints: 6, Finished: 5, Failed: 1", [marlin.Stats(prints=6)]),
    ("Stats: Total time: 1d 2h 3m 4s, Longest job: 5h 6m 7s", [marlin.Stats(print_time_s=93784)]),
    ("Stats: Filament used: 82.34m", [marlin.Stats(filament_m=82.34)]),
    ("start", [marlin.Started()]),
    ("echo:start", [marlin.Started()]),  # Marlin 2.0.6 to 2.0.8
    ("Marlin 2.1.2.1", [marlin.Echo("Marlin 2.1.2.1")]),  # the banner after `start`: not a second boot
    ("ok", [marlin.Ok("")]),
    ("echo:SD card ok", [marlin.Echo("SD card ok")]),
])
def test_status_lines(line: str, expected: list[marlin.Message]) -> None:
    got = [m for m in parse_line(line) if not isinstance(m, marlin.Ok)] if line != "ok" else parse_line(line)
    assert got == expected


# --- the printer model -----------------------------------------------------------------------------------------
def feed(model: PrinterModel, *lines: str) -> list[Reading]:
    out: list[Reading] = []
    for i, line in enumerate(lines):
        for msg in parse_line(line):
            out += model.on_message(msg, 1_000 + i)
    return out


def values(readings: list[Reading], signal: str) -> list[object]:
    return [r.value for r in readings if r.signal == signal]


def test_job_from_heat_up_to_completion() -> None:
    m = PrinterModel("fdm-01")
    out = feed(m, "Current file: (no file)", "Not SD printing", "File opened: BRACKE~1.GCO Size: 1000",
               "File selected", "echo:busy: processing", "Current file: BRACKE~1.GCO bracket_v3.gcode",
               "SD printing byte 0/1000", "echo:Print time: 1m 0s", "SD printing byte 500/1000",
               "echo:Print time: 10m 0s", "Done printing file", "Current file: (no file)", "Not SD printing")
    assert values(out, "state") == ["idle", "running", "idle"]
    assert values(out, "job_event") == ["start", "completed"]
    assert values(out, "job_file") == ["BRACKE~1.GCO", "bracket_v3.gcode", "bracket_v3.gcode"]
    assert values(out, "job_result") == ["completed"]
    assert values(out, "progress_pct") == [0.0, 50.0, 100.0]
    remaining = [r for r in out if r.signal == "remaining_s"]
    assert [r.value for r in remaining] == [60, 600, 0]
    assert remaining[0].quality is Quality.UNCERTAIN  # a linear estimate, not the firmware's own figure


def test_pause_by_runout_then_resume() -> None:
    m = PrinterModel("fdm-01")
    out = feed(m, "Current file: PART.GCO", "SD printing byte 10/100", "//action:prompt_begin FilamentRunout T0",
               "//action:paused", "Not SD printing", "Current file: PART.GCO", "echo:busy: paused for user",
               "//action:resumed", "SD printing byte 11/100")
    assert values(out, "state") == ["idle", "running", "paused", "running"]
    assert values(out, "job_event") == ["start"]
    assert values(out, "message") == ["paused: FilamentRunout T0", "paused: paused"]


def test_thermal_runaway_ends_the_job_as_failed_and_reboot_clears_the_error() -> None:
    m = PrinterModel("fdm-01")
    out = feed(m, "Current file: PART.GCO", "SD printing byte 10/100",
               "Error:Thermal Runaway, system stopped! Heater_ID: 0", "Error:Printer halted. kill() called!",
               "start", "Not SD printing")
    assert values(out, "state") == ["idle", "running", "error", "idle"]
    assert values(out, "job_result") == ["failed"]
    assert values(out, "job_event") == ["start", "failed"]
    assert values(out, "error")[0] == "Thermal Runaway, system stopped! Heater_ID: 0"


def test_stopped_job_is_cancelled_and_klipper_without_m27c_too() -> None:
    m = PrinterModel("fdm-01")
    out = feed(m, "Current file: PART.GCO", "SD printing byte 10/100", "Not SD printing", "Current file: (no file)")
    assert values(out, "job_result") == ["cancelled"]
    k = PrinterModel("fdm-02")
    out = feed(k, "ok FIRMWARE_VERSION:v0.12.0 FIRMWARE_NAME:Klipper", "SD printing byte 10/100",
               "Not SD printing.")
    assert values(out, "job_file") == ["unknown", "unknown"]
    assert values(out, "job_result") == ["cancelled"]


def test_reconnect_keeps_the_job_and_filament_is_counted_from_the_print_counter() -> None:
    m = PrinterModel("fdm-01")
    feed(m, "Stats: Filament used: 100.00m", "Current file: PART.GCO", "SD printing byte 10/100")
    assert values(m.on_link_lost(5), "state") == ["offline"]
    m.on_connected(6)
    out = feed(m, "Current file: PART.GCO")  # half a status round after a reconnect says nothing yet
    assert values(out, "state") == []
    out = feed(m, "SD printing byte 20/100") + m.on_status_round(7)
    out += feed(m, "Stats: Filament used: 100.50m", "Done printing file", "Stats: Filament used: 101.25m")
    assert values(out, "job_event") == ["completed"]  # no second start after the reconnect
    assert values(out, "state") == ["running", "idle"]
    assert values(out, "filament_used_mm") == [500.0, 1250.0]


def test_heater_power_is_a_percentage_of_full_scale() -> None:
    out = feed(PrinterModel("fdm-01"), "ok T:210.00 /215.00 B:59.90 /60.00 @:127 B@:0")
    assert values(out, "nozzle_power_pct") == [100.0]
    assert values(out, "bed_power_pct") == [0.0]
    out = feed(PrinterModel("fdm-01", heater_power_full_scale=255), "ok T:210.00 /215.00 @:51")
    assert values(out, "nozzle_power_pct") == [20.0]
