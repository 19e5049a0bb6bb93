"""Credentials are masked in text, JSON and every log line, the CLI's logging included."""

from __future__ import annotations

import logging

import pytest

from gateway.redact import RedactingFilter, redact, redact_obj


@pytest.mark.parametrize(("text", "clean"), [
    ("http://kartech:S3cret@influx:8086/write", "http://***@influx:8086/write"),
    ("mqtts://gw:pw@broker:8883 and https://grafana.lab/x", "mqtts://***@broker:8883 and https://grafana.lab/x"),
    ("GET /api/v1/live?token=abc123&x=1 HTTP/1.1", "GET /api/v1/live?token=***&x=1 HTTP/1.1"),
    ("/write?db=kartech&u=k&p=S3cret", "/write?db=kartech&u=k&p=***"),
    ("/hook?Api_Key=k3y", "/hook?Api_Key=***"),
    ("""< TEXT '{"type": "auth", "token": "abc123"}' [54 bytes]""",
     """< TEXT '{"type": "auth", "token": "***"}' [54 bytes]"""),
    ("""< TEXT '{"type": "auth", "token": "abc...' [954 bytes]""", """< TEXT '{"type": "auth", "token": "***"""),
    ("{'password': 'hunter2', 'user': 'x'}", "{'password': '***', 'user': 'x'}"),
    ("< authorization: Bearer abc123", "< authorization: ***"),
    ("< Cookie: session=abc123", "< Cookie: ***"),
    ("alice@example.org wrote", "alice@example.org wrote"),
    ("no secrets here", "no secrets here"),
])
def test_redact(text: str, clean: str) -> None:
    assert redact(text) == clean


def test_redact_obj_walks_json() -> None:
    assert redact_obj({"a": ["http://u:p@h/"], "n": 1}) == {"a": ["http://***@h/"], "n": 1}


def test_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5555", "/api/v1/live?token=abc123")
        try:
            raise ConnectionError("cannot reach http://kartech:S3cret@influx:8086")
        except ConnectionError:
            logger.exception("sink failed")
    text = caplog.text
    assert "abc123" not in text
    assert "S3cret" not in text
    assert "/api/v1/live?token=***" in text


def test_the_cli_logging_masks_credentials(caplog: pytest.LogCaptureFixture) -> None:
    from gateway.cli import _setup_logging

    _setup_logging(False)
    logging.getLogger("gateway.sinks.influx").warning("cannot reach InfluxDB at http://kartech:S3cret@influx:8086")
    assert "http://***@influx:8086" in caplog.text
    assert "S3cret" not in caplog.text
