"""Real servers on loopback for integration tests: started once per session, restarted if a test stopped one."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TypeVar

import pytest

from simulators.services import LOOPBACK, InfluxDB1, Mosquitto, VictoriaMetrics

S = TypeVar("S", InfluxDB1, Mosquitto, VictoriaMetrics)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def _serve(server: S) -> Iterator[S]:
    server.start()
    try:
        yield server
    finally:
        server.close()


def _up(server: S) -> None:
    if not _listening(server.port):
        server.start()


@pytest.fixture(scope="session")
def _influxdb_server() -> Iterator[InfluxDB1]:
    yield from _serve(InfluxDB1())


@pytest.fixture(scope="session")
def _victoria_server() -> Iterator[VictoriaMetrics]:
    yield from _serve(VictoriaMetrics())


@pytest.fixture(scope="session")
def _mosquitto_server() -> Iterator[Mosquitto]:
    yield from _serve(Mosquitto())


@pytest.fixture
def influxdb(_influxdb_server: InfluxDB1) -> InfluxDB1:
    """The session's influxd 1.6 (`.url`, `.query()`, `.create_database()`); use a unique database per test."""
    _up(_influxdb_server)
    return _influxdb_server


@pytest.fixture
def victoria(_victoria_server: VictoriaMetrics) -> VictoriaMetrics:
    """The session's VictoriaMetrics (`.url`, `.export()`); use unique tag values per test."""
    _up(_victoria_server)
    return _victoria_server


@pytest.fixture
def mosquitto(_mosquitto_server: Mosquitto) -> Mosquitto:
    """The session's Mosquitto (`.port`, `.url`, `.restart()`, `.stop()`); use unique topics per test."""
    _up(_mosquitto_server)
    return _mosquitto_server
