"""Schemathesis against the whole API (in-process, with alerts, maintenance and OEE on a throwaway store): no
input gives a server error, and every answer is one the OpenAPI document promises (status, content type, body)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from kit.bill import BILLING, month_entries
from kit.ops import Clock, build, feed, site
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.metrics import Metrics

TOKEN = "fuzz-admin-token-0123456789"
EXAMPLES = 40  # per operation: the whole run stays well under a minute
PLANS = """
maintenance:
  plans:
    - {id: nozzle, name: Clean the nozzle, kinds: [printer], every: {running_h: 1}}
"""
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance)


async def _history(machine: str, signal: str, start_ns: int, end_ns: int, limit: int) -> list[Any]:
    return [(start_ns, 1.5, "good")]


def make_app(tmp_path: Path) -> FastAPI:
    clock = Clock()
    live, ops = build(site(PLANS + BILLING), tmp_path, clock)
    feed(live, clock, "fdm-01", state="running")
    ops.usage.ledger.add(month_entries())  # usage and statements to read, unattributed usage to assign
    return create_app(ApiContext(site_id="krg", site_name="Fuzz", machines=live.stage, metrics=Metrics(),
                                 tokens={TOKEN: ("fuzz", "admin")}, history=_history, health=dict,
                                 services=ops))


@pytest.mark.parametrize(("method", "path", "body", "detail"), [
    ("GET", f"/api/v1/alerts/{2**64}", None, "path parameter 'alert_id': Input should be less than or equal to"),
    ("POST", f"/api/v1/alerts/{2**63}/ack", None, "path parameter 'alert_id'"),
    ("POST", "/api/v1/alerts/1/shelve", b'{"duration_min": NaN}', "body 'duration_min': Input should be a finite"),
    ("POST", "/api/v1/alerts/1/shelve", b'{"duration_min": Infinity}', "body 'duration_min'"),
    ("GET", "/api/v1/events?from=0001-01-01T00:00:00Z", None, "from: '0001-01-01T00:00:00Z' is out of range"),
    ("GET", "/api/v1/events?to=9999-12-31T23:59:59Z", None, "to: '9999-12-31T23:59:59Z' is out of range"),
    ("GET", "/api/v1/events?to=9999-12-31T23:59:59-05:00", None, "is out of range"),
    ("GET", "/api/v1/oee?from=0001-01-01T00:00:00%2B05:00", None, "is out of range"),
    ("GET", "/api/v1/machines/fdm-01/history?signal=state&start=0001-01-01", None, "start: '0001-01-01' is out"),
    ("GET", "/api/v1/machines/fdm-01/history?signal=state&end=9999-12-31", None, "end: '9999-12-31' is out"),
    ("GET", "/api/v1/machines/fdm-01/history?signal=", None, "query parameter 'signal': String should have"),
])
def test_bad_input_is_a_clear_422_never_a_server_error(tmp_path: Path, method: str, path: str, body: bytes | None,
                                                      detail: str) -> None:
    with TestClient(make_app(tmp_path), raise_server_exceptions=False) as client:
        r = client.request(method, path, content=body, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert detail in r.json()["detail"]


def test_api_answers_as_documented(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # valid input (positive) and input that breaks the schema (negative): neither may give a server error
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
               | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as err:  # every operation is tried; all reported together
            failures[operation.label] = str(err)
    assert operations >= 15
    assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
