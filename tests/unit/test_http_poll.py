"""LinkWatch (loss and recovery said once, backoff between attempts) and the base-address rule of network printers.

LinkWatch runs against the gateway's real supervisor context, whose log lines are the ones a technician reads.
"""

from __future__ import annotations

import logging
import random
import re

import pytest
from kit.driver import DriverHarness

from drivers.http_poll import LinkWatch, base_url
from drivers.prusalink.config import PrusaLinkMachine
from drivers.prusalink.driver import PrusaLinkDriver
from gateway.backoff import Backoff
from gateway.machines import MachineMeta


def harness() -> DriverHarness:
    m = PrusaLinkMachine(id="mk4-01", name="MK4", kind="printer", driver="prusalink", url="http://127.0.0.1:9",
                         auth="none")
    return DriverHarness(PrusaLinkDriver(m), [MachineMeta(id=m.id, name=m.name, kind=m.kind, driver="prusalink",
                                                          site="test")])


def test_loss_and_recovery_are_said_once_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h = harness()
    clock = iter(range(100)).__next__
    watch = LinkWatch("mk4-01", backoff=Backoff(1.0, 4.0, rng=random.Random(1)), clock=lambda: float(clock()))
    assert watch.up(h.ctx) is True  # the first success: announce everything
    assert watch.up(h.ctx) is False
    delays = [watch.down(h.ctx, "unreachable", f"printer mk4-01 cannot be reached (attempt {i})") for i in range(6)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert delays[-1] >= 2.0  # grown to the cap's upper half
    assert not h.lab.values.get("mk4-01").connected
    assert watch.down(h.ctx, "credentials", "printer mk4-01 refused the gateway's credentials") <= 4.0
    assert watch.down(h.ctx, "credentials", "printer mk4-01 refused the gateway's credentials") <= 4.0
    assert watch.up(h.ctx) is True
    assert h.lab.values.get("mk4-01").connected
    assert watch.down(h.ctx, "unreachable", "printer mk4-01 cannot be reached (again)") <= 1.0  # backoff reset
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "prusalink:mk4-01 unavailable: printer mk4-01 cannot be reached (attempt 0); retrying with backoff",
        "mk4-01 still cannot be read, now: printer mk4-01 refused the gateway's credentials",
        lines[2],
        "prusalink:mk4-01 unavailable: printer mk4-01 cannot be reached (again); retrying with backoff",
    ]
    assert lines[2].startswith("prusalink:mk4-01 recovered after ")


@pytest.mark.parametrize(("url", "path", "ok"), [
    ("http://192.168.1.5", False, "http://192.168.1.5"),
    ("https://printer.lab:8443/", False, "https://printer.lab:8443"),
    ("http://octopi.local/octoprint/", True, "http://octopi.local/octoprint"),
])
def test_base_addresses(url: str, path: bool, ok: str) -> None:
    assert base_url(url, "http://x", path=path) == ok


@pytest.mark.parametrize(("url", "path", "message"), [
    ("http://192.168.1.5/api", False, "is not the printer's base address; use e.g. http://x"),
    ("192.168.1.5", True, "is not the printer's base address; use e.g. http://x"),
    ("http://maker:pw@192.168.1.5", False, "has credentials in it; give them in their own keys, as ${ENV_VAR}"),
    ("http://octopi.local/?apikey=1", True, "is not the printer's base address; use e.g. http://x"),
])
def test_addresses_refused(url: str, path: bool, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        base_url(url, "http://x", path=path)
    assert str(err.value) == message
