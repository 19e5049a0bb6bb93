"""Splitting serial bytes into lines, classifying garbage, and what to do when a port does not open."""

from __future__ import annotations

import errno

from drivers.serial.transport import Bad, Line, LineSplitter, explain_open_error


def test_lines_split_across_reads_with_any_line_ending() -> None:
    s = LineSplitter()
    assert s.feed(b"ok T:21", 0.0) == []
    assert s.feed(b"0.0 /0.0\r", 0.1) == []  # a CR at the end may be followed by LF
    assert s.feed(b"\nSD printing byte 1/2\rNot SD printing\n", 0.2) == [
        Line("ok T:210.0 /0.0"), Line("SD printing byte 1/2"), Line("Not SD printing")]


def test_garbage_is_classified_by_reason() -> None:
    s = LineSplitter(max_line_bytes=64)
    items = s.feed(b"T:210.0 /215.0\x00\x07ok\n" + bytes([0xF8, 0x80, 0xFE, 0x9C, 0xE0]) + b"\n" + b"X" * 100 + b"\n"
                   + b"\xc3\x28abc\n" + b"  \n" + b"ok\n", 0.0)
    assert [i.reason if isinstance(i, Bad) else i.text for i in items] == [
        "binary", "garbled", "over_long", "undecodable", "noise", "ok"]


def test_boot_marker_behind_reset_glitch_bytes_is_still_a_line() -> None:
    s = LineSplitter()
    assert s.feed(b"\xff\x00start\n\x00\xfeecho:start\n", 0.0) == [Line("start"), Line("echo:start")]
    assert isinstance(s.feed(b"\xff\x00\xf0restart\n", 0.0)[0], Bad)  # only the boot marker itself


def test_a_fragment_without_line_end_becomes_a_partial_line() -> None:
    s = LineSplitter(partial_timeout_s=2.0)
    assert s.feed(b"T:21", 10.0) == []
    assert s.expire(11.0) == []
    (bad,) = s.expire(12.5)
    assert isinstance(bad, Bad)
    assert bad.reason == "partial_line"
    assert s.feed(b"ok\n", 13.0) == [Line("ok")]


def test_over_long_line_is_skipped_to_its_end_even_across_reads() -> None:
    s = LineSplitter(max_line_bytes=16)
    first = s.feed(b"A" * 20, 0.0)
    assert [i.reason for i in first if isinstance(i, Bad)] == ["over_long"]
    assert s.feed(b"B" * 30 + b"\nok\n", 0.1) == [Line("ok")]


def test_open_errors_say_what_to_do() -> None:
    missing = explain_open_error("/dev/serial/by-id/usb-nothing-if00", FileNotFoundError(errno.ENOENT, "No such"))
    assert missing.startswith("/dev/serial/by-id/usb-nothing-if00 does not exist: is the device plugged in")
    denied = explain_open_error("/dev/null", PermissionError(errno.EACCES, "Permission denied"))
    assert denied.startswith("permission denied opening /dev/null: it belongs to group 'root'; add the gateway's "
                             "user to it (sudo usermod -aG root ")
    busy = explain_open_error("/dev/null", OSError(errno.EAGAIN, "Could not exclusively lock port"))
    assert busy.startswith("/dev/null is in use by another program")
    assert "one owner" in busy
