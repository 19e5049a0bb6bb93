"""check-config refuses secrets written into the site file, wherever they hide; exact text as a technician reads it."""

from __future__ import annotations

import pytest

from gateway.config.loader import check_text
from gateway.registry import discover

SPECS = discover()
BASE = """\
site: {id: kartech, name: Test hub}
storage:
  influxdb: {version: 1, url: "http://influxdb:8086", database: kartech}
mqtt:
  brokers:
    - {id: lab, host: 127.0.0.1}
notifications:
  channels:
    - id: scada
      type: webhook
      url: https://scada.lab.local/api/alarms
      headers: {Authorization: "Bearer ${WEBHOOK_TOKEN}"}
machines:
  - {id: fdm-03, name: Printer 3, kind: printer, driver: mqtt, broker: lab,
     topics: [{topic: "lab/{site}/{machine}/report", fields: {nozzle_temp: {unit: degC}}}]}
"""
ENV = {"WEBHOOK_TOKEN": "w" * 20, "INFLUX_URL": "http://u:p@influxdb:8086", "INFLUX_PASSWORD": "s3cret"}


def problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, ENV).problems]


def test_the_base_file_is_clean() -> None:
    assert problems(BASE) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    # a default of an environment reference puts the secret in the file after all
    ("database: kartech}", "database: kartech, username: k, password: '${NOT_SET:-hunter2}'}",
     "site.yaml:3 — storage\n  influxdb.password: has a literal default (${VAR:-...}), which puts the secret in "
     "the file after all; drop the default (e.g. password: ${KARTECH_STORAGE_INFLUXDB_PASSWORD})"),
    # user information in a URL
    ('url: "http://influxdb:8086"', 'url: "http://kartech:S3cret@influxdb:8086"',
     "site.yaml:3 — storage\n  influxdb.url: has credentials in the URL (user:password@), where logs and error "
     "texts would show them; give them in their own keys as ${ENV_VAR} (username:, password:)"),
    ("url: https://scada.lab.local/api/alarms", "url: https://hook:${NOT_SET:-pw}@scada.lab.local/api/alarms",
     "site.yaml:11 — notifications\n  channels[0].url: has credentials in the URL (user:password@), where logs "
     "and error texts would show them; give them in their own keys as ${ENV_VAR} (username:, password:)"),
    # a credential header of a webhook
    ('{Authorization: "Bearer ${WEBHOOK_TOKEN}"}', '{Authorization: "Bearer abc123"}',
     "site.yaml:12 — notifications\n  channels[0].headers.Authorization: carries a credential written literally; "
     "take it from the environment (e.g. Authorization: Bearer ${KARTECH_NOTIFICATIONS_CHANNELS_TOKEN})"),
    ('{Authorization: "Bearer ${WEBHOOK_TOKEN}"}', '{x-api-key: "k3y"}',
     "site.yaml:12 — notifications\n  channels[0].headers.x-api-key: carries a credential written literally; take it "
     "from the environment (e.g. x-api-key: ${KARTECH_NOTIFICATIONS_CHANNELS_TOKEN})"),
    # a secret-looking query parameter
    ("url: https://scada.lab.local/api/alarms", "url: https://scada.lab.local/api/alarms?api_key=k3y",
     "site.yaml:11 — notifications\n  channels[0].url: has a secret in the URL's query (api_key=...); take it from the "
     "environment (e.g. api_key=${KARTECH_NOTIFICATIONS_CHANNELS_URL_API_KEY})"),
])
def test_literal_secrets_are_refused_wherever_they_hide(old: str, new: str, expected: str) -> None:
    assert BASE.count(old) == 1
    assert problems(BASE.replace(old, new)) == [expected]


@pytest.mark.parametrize(("old", "new"), [
    ("database: kartech}", "database: kartech, username: k, password: '${INFLUX_PASSWORD}'}"),
    ("database: kartech}", "database: kartech, username: k, password: '${INFLUX_PASSWORD:-}'}"),
    ('url: "http://influxdb:8086"', 'url: "${INFLUX_URL}"'),  # credentials from the environment: redacted
    ('url: "http://influxdb:8086"', 'url: "http://${INFLUX_USER:-kartech}:${INFLUX_PASSWORD}@influxdb:8086"'),
    ("url: https://scada.lab.local/api/alarms",
     "url: https://scada.lab.local/api/alarms?site=krg&token=${WEBHOOK_TOKEN}"),
    ('{Authorization: "Bearer ${WEBHOOK_TOKEN}"}', '{Content-Type: "application/json", X-Site: krg}'),
])
def test_secrets_from_the_environment_pass(old: str, new: str) -> None:
    assert problems(BASE.replace(old, new)) == []
