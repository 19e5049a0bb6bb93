"""The durable outbox: groups, per-sink cursors, restart, dead letters, the size limit and an unwritable directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pytest

from gateway.outbox import Outbox, OutboxError, decode, encode
from gateway.reading import Quality, Reading
from gateway.sinks.base import Rejected


def readings(n: int, start: int = 0, machine: str = "fdm-01") -> list[Reading]:
    return [Reading(machine, "nozzle_temp", 200.0 + i, "degC", Quality.GOOD, 1_000 + i, 2_000 + i)
            for i in range(start, start + n)]


async def opened(path: Path, sinks: tuple[str, ...] = ("influxdb",), *, max_bytes: int = 1 << 30,
                 policy: Literal["backpressure", "drop_oldest"] = "backpressure") -> Outbox:
    ob = Outbox(path, sinks, max_bytes=max_bytes, policy=policy)
    await ob.open()
    return ob


def test_encode_decode_round_trip_keeps_every_field() -> None:
    rs = [Reading("m", "s", v, u, q, 5, 6) for v, u, q in
          ((1.5, "degC", Quality.GOOD), (7, None, Quality.UNCERTAIN), (True, None, Quality.GOOD),
           ("printing", None, Quality.GOOD), (None, None, Quality.BAD))]
    assert decode(encode(rs)) == rs


async def test_append_read_confirm_and_delete_after_every_sink_confirmed(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite", ("influxdb", "history"))
    s1 = await ob.append(readings(3))
    s2 = await ob.append(readings(2, 3))
    assert (s1, s2) == (1, 2)
    assert ob.queued_readings("influxdb") == 5
    got = await ob.read("influxdb", 10)
    assert [seq for seq, _ in got] == [1, 2]
    assert [r for _, rs in got for r in rs] == readings(5)
    await ob.confirm("influxdb", 2)
    assert ob.queued_readings("influxdb") == 0
    assert ob.queued_readings("history") == 5
    assert len(ob.rows) == 2  # history still needs both groups
    assert await ob.read("influxdb", 10) == []
    await ob.confirm("history", 1)
    assert [r.seq for r in ob.rows] == [2]
    await ob.close()
    with sqlite3.connect(tmp_path / "o.sqlite") as db:
        assert db.execute("SELECT seq FROM outbox").fetchall() == [(2,)]
        assert dict(db.execute("SELECT sink, seq FROM cursors").fetchall()) == {"influxdb": 2, "history": 1}


async def test_read_returns_at_least_one_group_and_stops_near_max_readings(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite")
    for i in range(4):
        await ob.append(readings(3, 3 * i))
    assert [seq for seq, _ in await ob.read("influxdb", 7)] == [1, 2]
    assert [seq for seq, _ in await ob.read("influxdb", 1)] == [1]  # a group larger than the limit still comes
    await ob.close()


async def test_restart_resumes_after_the_cursor_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path)
    for i in range(3):
        await ob.append(readings(2, 2 * i))
    await ob.confirm("influxdb", 1)
    await ob.close()

    again = await opened(path)
    assert again.cursors == {"influxdb": 1}
    assert again.queued_readings("influxdb") == 4
    assert [seq for seq, _ in await again.read("influxdb", 100)] == [2, 3]
    assert await again.append(readings(1, 99)) == 4  # sequence numbers continue
    assert again.oldest_age_s("influxdb", now_ns=2_000 + 2 + 1_000_000_000) == pytest.approx(1.0)
    await again.close()


async def test_sequence_continues_after_everything_was_confirmed_and_deleted(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path)
    await ob.append(readings(1))
    await ob.append(readings(1))
    await ob.confirm("influxdb", 2)
    await ob.close()
    again = await opened(path)
    assert again.queued_readings("influxdb") == 0
    assert await again.append(readings(1)) == 3
    await again.close()


async def test_a_new_sink_starts_at_what_is_still_queued(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path)
    for _ in range(3):
        await ob.append(readings(1))
    await ob.confirm("influxdb", 1)
    await ob.close()
    again = await opened(path, ("influxdb", "history"))
    assert again.cursors == {"influxdb": 1, "history": 1}
    assert again.queued_readings("history") == 2
    await again.close()


async def test_dead_letters_keep_sink_reason_line_and_count(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite")
    bad = readings(2)
    await ob.dead_letter("influxdb", [Rejected(tuple(bad), "printer,machine=fdm-01 x=1i 5", "field type conflict")])
    assert ob.dead_lettered["influxdb"] == 2
    rows = await ob.dead_letters("influxdb")
    assert [(r["sink"], r["reason"], r["line"]) for r in rows] == [
        ("influxdb", "field type conflict", "printer,machine=fdm-01 x=1i 5")]
    assert await ob.dead_letters("history") == []
    await ob.close()
    with sqlite3.connect(tmp_path / "o.sqlite") as db:
        (blob,) = db.execute("SELECT readings FROM dead_letters").fetchone()
    assert decode(blob) == bad


async def test_drop_oldest_counts_per_sink_and_keeps_cursors_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path, ("influxdb", "history"))
    await ob.append(readings(3))
    await ob.append(readings(2, 3))
    await ob.confirm("history", 1)  # history already has group 1, influxdb does not
    assert await ob.drop_oldest() == 3
    assert ob.dropped == {"influxdb": 3, "history": 0}
    assert [r.seq for r in ob.rows] == [2]
    await ob.close()
    again = await opened(path, ("influxdb", "history"))
    assert again.cursors == {"influxdb": 1, "history": 1}
    assert [seq for seq, _ in await again.read("influxdb", 10)] == [2]
    await again.close()


async def test_drop_oldest_does_not_count_a_group_the_sink_is_writing_right_now(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite")
    await ob.append(readings(3))
    await ob.append(readings(2, 3))
    ob.taken["influxdb"] = 1  # the sink writer holds group 1 in memory and retries it until it lands
    assert await ob.drop_oldest() == 3
    assert await ob.drop_oldest() == 2
    assert ob.dropped == {"influxdb": 2}
    assert ob.cursors == {"influxdb": 2}
    await ob.close()


async def test_full_clears_the_space_event_until_a_sink_confirms(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite", max_bytes=1 << 16, policy="backpressure")
    assert ob.space.is_set()
    seqs = []
    while not ob.full():
        seqs.append(await ob.append(readings(50)))
    assert not ob.space.is_set()
    assert ob.bytes >= ob.max_bytes
    await ob.confirm("influxdb", seqs[len(seqs) // 2])
    assert not ob.full()
    assert ob.space.is_set()
    await ob.close()


async def test_unwritable_directory_raises_outbox_error_then_works_once_writable(tmp_path: Path) -> None:
    # chmod does not stop root: a regular file where the directory should be stops everyone
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    ob = Outbox(blocker / "outbox.sqlite", ["influxdb"], max_bytes=1 << 30)
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        await ob.open()
    with pytest.raises(OutboxError):
        await ob.append(readings(1))
    assert not ob.rows
    blocker.unlink()
    assert await ob.append(readings(2)) == 1  # append opens it on the next try
    assert [r for _, rs in await ob.read("influxdb", 10) for r in rs] == readings(2)
    await ob.close()

