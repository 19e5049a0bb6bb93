"""LocalHistory on a real SQLite file: write, read back, idempotency, retention, rejects."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import SinkConfigError
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Quality, Reading, Value
from gateway.sinks.history import LocalHistory

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
DAY = 86_400 * S
MACHINES = {"fdm-01": MachineMeta("fdm-01", "Printer", "printer", "mqtt", "kartech")}


def rd(signal: str, value: Value, ts: int = T0, quality: Quality = Quality.GOOD, machine: str = "fdm-01") -> Reading:
    return Reading(machine, signal, value, None, quality, ts, ts)


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[LocalHistory]:
    h = LocalHistory(tmp_path / "data" / "history.sqlite", MACHINES, Metrics(), retention_days=14)
    await h.open()
    yield h
    await h.close()


async def test_write_and_query_keeps_types_and_quality(history: LocalHistory) -> None:
    result = await history.write(
        [
            rd("temp", 215.5),
            rd("temp", 216.0, T0 + S, Quality.UNCERTAIN),
            rd("temp", 999.0, T0 + 2 * S, Quality.BAD),
            rd("temp", 1.0, T0 + 3 * S),
            rd("layer", 2**62),
            rd("door", True),
            rd("job", "gear.gcode"),
        ]
    )
    assert (result.written, result.rejected) == (7, [])
    assert await history.query_history("fdm-01", "temp", T0, T0 + 10 * S, 100) == [
        (T0, 215.5, "good"),
        (T0 + S, 216.0, "uncertain"),
        (T0 + 2 * S, None, "bad"),
        (T0 + 3 * S, 1.0, "good"),
    ]
    got = await history.query_history("fdm-01", "temp", T0 + S, T0 + 3 * S, 100)
    assert [ts for ts, _, _ in got] == [T0 + S, T0 + 2 * S]
    assert await history.query_history("fdm-01", "temp", T0, T0 + 10 * S, 2) == [
        (T0, 215.5, "good"),
        (T0 + S, 216.0, "uncertain"),
    ]
    (layer,) = await history.query_history("fdm-01", "layer", 0, T0 + 1, 10)
    assert layer == (T0, 2**62, "good")
    assert type(layer[1]) is int
    (door,) = await history.query_history("fdm-01", "door", 0, T0 + 1, 10)
    assert door == (T0, True, "good")
    assert type(door[1]) is bool
    assert await history.query_history("fdm-01", "job", 0, T0 + 1, 10) == [(T0, "gear.gcode", "good")]
    assert await history.query_history("fdm-01", "nothing", 0, T0 + 1, 10) == []
    assert history.metrics.value("sink_points_written_total", sink="history") == 7


async def test_rewrite_replaces(history: LocalHistory, tmp_path: Path) -> None:
    await history.write([rd("temp", 20.0), rd("temp", 21.0, T0 + S)])
    await history.write([rd("temp", 20.0), rd("temp", 25.0, T0 + S, Quality.UNCERTAIN)])
    assert await history.query_history("fdm-01", "temp", 0, T0 + DAY, 10) == [
        (T0, 20.0, "good"),
        (T0 + S, 25.0, "uncertain"),
    ]
    with sqlite3.connect(tmp_path / "data" / "history.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (2,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_purge_drops_only_old_rows(history: LocalHistory) -> None:
    now = T0 + 30 * DAY
    await history.write(
        [rd("temp", 1.0, T0), rd("temp", 2.0, now - 15 * DAY), rd("temp", 3.0, now - 13 * DAY), rd("door", False, T0)]
    )
    assert await history.purge(now) == 3
    assert await history.query_history("fdm-01", "temp", 0, now, 10) == [(now - 13 * DAY, 3.0, "good")]
    assert await history.query_history("fdm-01", "door", 0, now, 10) == []
    assert await history.purge(now) == 0
    assert history.metrics.value("history_rows_purged_total") == 3


async def test_unstorable_readings_are_rejected_not_dropped(history: LocalHistory) -> None:
    nan, ghost = rd("temp", float("nan")), rd("temp", 1.0, machine="ghost")
    result = await history.write([nan, rd("temp", 5.0), ghost, rd("big", 2**64)])
    assert result.written == 1
    assert [(r.readings[0].signal, r.reason) for r in result.rejected] == [
        ("temp", "signal 'temp': nan is not a finite number"),
        ("temp", "unknown machine 'ghost'"),
        ("big", f"signal 'big': integer {2**64} is out of the 64-bit range"),
    ]


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = LocalHistory(path, MACHINES, Metrics(), retention_days=1)
    await h.open()
    await h.write([rd("temp", 7.5)])
    await h.close()
    h2 = LocalHistory(path, MACHINES, Metrics(), retention_days=1)
    await h2.open()
    assert await h2.query_history("fdm-01", "temp", 0, T0 + 1, 10) == [(T0, 7.5, "good")]
    await h2.close()


async def test_unopenable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    h = LocalHistory(tmp_path / "file" / "h.sqlite", MACHINES, Metrics(), retention_days=1)
    with pytest.raises(SinkConfigError, match="cannot open the local history at"):
        await h.open()
