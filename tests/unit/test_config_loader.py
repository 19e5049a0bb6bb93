"""Config errors as a technician reads them: exact text, every problem at once, with file and line; secrets written
into the site file are refused wherever they hide."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import DEMO_SECRETS, main
from gateway.config.loader import check_text, load
from gateway.config.schema import schema_text
from gateway.errors import ConfigError
from gateway.registry import discover

ROOT = Path(__file__).resolve().parents[2]
SPECS = discover()
ENV = {"INFLUX_TOKEN": "t" * 20, "MQTT_PASSWORD": "p", "KARTECH_SCREEN_TOKEN": "s" * 20,
       "KARTECH_TECH_TOKEN": "k" * 20, "KARTECH_ADMIN_TOKEN": "a" * 20,
       "TELEGRAM_BOT_TOKEN": "1:x", "SMTP_PASSWORD": "p", "WEBHOOK_TOKEN": "w",
       **dict.fromkeys(DEMO_SECRETS, "0123456789abcdef")}

BASE = """\
site:
  id: kartech
  name: Test hub
mqtt:
  brokers:
    - id: lab
      host: 127.0.0.1
machines:
  - id: fdm-03
    name: Printer 3
    kind: printer
    driver: mqtt
    broker: lab
    topics:
      - topic: lab/{site}/{machine}/report
        fields:
          nozzle_temp: {path: temps.nozzle, unit: degC}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, env or {}).problems]


def test_valid_file_has_no_problems() -> None:
    result = check_text(BASE, "site.yaml", SPECS, {})
    assert result.problems == []
    assert result.config is not None
    assert result.config.machines[0].id == "fdm-03"


def test_unknown_unit_suggests_the_canonical_one() -> None:
    assert problems(BASE.replace("unit: degC", "unit: celcius")) == [
        'site.yaml:17 — machine "fdm-03" (driver mqtt)\n'
        '  topics[0].fields.nozzle_temp.unit: "celcius" is unknown; did you mean "degC"?'
    ]


def test_typo_in_key_suggests_the_right_key() -> None:
    assert problems(BASE.replace("    broker: lab", "    brokr: lab")) == [
        'site.yaml:9 — machine "fdm-03" (driver mqtt)\n  broker: is required — Id of a broker under mqtt.brokers.',
        'site.yaml:13 — machine "fdm-03" (driver mqtt)\n  brokr: is not a known key; did you mean "broker"?',
    ]


def test_unknown_broker_reference_lists_the_known_ones() -> None:
    assert problems(BASE.replace("    broker: lab", "    broker: shop")) == [
        'site.yaml:13 — machine "fdm-03" (driver mqtt)\n'
        '  broker: "shop" is not a broker under mqtt.brokers; use one of: lab'
    ]


def test_unknown_driver_suggests_the_closest() -> None:
    assert problems(BASE.replace("driver: mqtt", "driver: mqt")) == [
        'site.yaml:12 — machine "fdm-03"\n  driver: "mqt" is not a known driver; did you mean "mqtt"? (known: '
        + ", ".join(sorted(SPECS)) + ")"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = (BASE.replace("id: kartech", "id: Kartech Hub")
            .replace("host: 127.0.0.1", "host: 127.0.0.1\n      port: 99999")
            .replace("unit: degC", "unit: degC, scale: fast"))
    assert problems(text) == [
        'site.yaml:2 — site\n  id: "Kartech Hub" is not valid here; use lower-case letters, digits, \'-\' and \'_\' '
        "(e.g. fdm-03)",
        'site.yaml:8 — mqtt broker "lab"\n  port: 99999 is out of range: input should be less than or equal to 65535',
        'site.yaml:18 — machine "fdm-03" (driver mqtt)\n  topics[0].fields.nozzle_temp.scale: "fast" is not a number',
    ]


def test_duplicate_machine_ids() -> None:
    second = BASE[BASE.index("  - id: fdm-03"):]
    assert problems(BASE + second) == [
        'site.yaml:18 — machine "fdm-03" (driver mqtt)\n'
        '  id: "fdm-03" is already used by machines[0]; machine ids must be unique'
    ]


def test_duplicate_machine_id_is_reported_with_problems_of_other_machines() -> None:
    second = BASE[BASE.index("  - id: fdm-03"):]
    third = second.replace("fdm-03", "fdm-04").replace("Printer 3", "Printer 4").replace("unit: degC", "unit: celcius")
    assert problems(BASE + second + third) == [
        'site.yaml:18 — machine "fdm-03" (driver mqtt)\n'
        '  id: "fdm-03" is already used by machines[0]; machine ids must be unique',
        'site.yaml:35 — machine "fdm-04" (driver mqtt)\n'
        '  topics[0].fields.nozzle_temp.unit: "celcius" is unknown; did you mean "degC"?',
    ]


def test_duplicate_broker_id_is_reported_with_a_problem_of_that_broker() -> None:
    text = BASE.replace("      host: 127.0.0.1\n", "      host: 127.0.0.1\n    - id: lab\n      host: 127.0.0.2\n"
                        "      port: 99999\n")
    assert problems(text) == [
        'site.yaml:8 — mqtt broker "lab"\n  id: "lab" is used by two brokers',
        'site.yaml:10 — mqtt broker "lab"\n  port: 99999 is out of range: input should be less than or equal to 65535',
    ]


def test_yaml_syntax_error_has_a_line() -> None:
    assert problems(BASE.replace("    kind: printer", "   kind: printer")) == [
        "site.yaml:11 — YAML syntax\n  expected <block end>, but found '<block mapping start>'; "
        "check indentation and quotes"
    ]


def test_literal_secret_is_refused_and_env_reference_is_used() -> None:
    text = BASE.replace("host: 127.0.0.1", "host: 127.0.0.1\n      password: hunter2")
    assert problems(text) == [
        'site.yaml:8 — mqtt broker "lab"\n  password: is written literally; write it as ${ENV_VAR} so the secret '
        "stays out of the file (e.g. password: ${KARTECH_MQTT_PASSWORD})"
    ]
    env_text = BASE.replace("host: 127.0.0.1", "host: 127.0.0.1\n      password: ${MQTT_PASSWORD}")
    cfg = check_text(env_text, "site.yaml", SPECS, {"MQTT_PASSWORD": "s3cret"}).config
    assert cfg is not None
    assert cfg.mqtt.brokers[0].password == "s3cret"
    assert problems(env_text) == [
        'site.yaml:8 — mqtt broker "lab"\n  password: environment variable MQTT_PASSWORD is not set; '
        "export it before start"
    ]


def test_topic_template_errors() -> None:
    assert problems(BASE.replace("lab/{site}/{machine}/report", "lab/{site}/{machin}/#")) == [
        'site.yaml:15 — machine "fdm-03" (driver mqtt)\n'
        '  topics[0].topic: "lab/{site}/{machin}/#" must not contain MQTT wildcards; use placeholders such as '
        "{signal}"
    ]


def test_shipped_configs_are_valid() -> None:
    for name in ("demo.yaml", "example-site.yaml"):
        result = check_text((ROOT / "config" / name).read_text(), name, SPECS, ENV)
        assert result.problems == [], name


def test_example_site_with_three_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "config" / "example-site.yaml").read_text()
    text = text.replace("timezone: Asia/Almaty ", "timezone: Asia/Almatty ", 1)
    text = text.replace("version: 2 ", "version: 4 ", 1)
    text = text.replace("    broker: lab\n    expected_interval_s: 5", "    brokr: lab\n    expected_interval_s: 5", 1)
    bad = tmp_path / "site.yaml"
    bad.write_text(text)
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:10 — site\n  timezone: \"Asia/Almatty\" is not an IANA time zone" in err
    assert f"{bad}:20 — storage\n  influxdb.version: \"4\" is not allowed; use one of 1, 2, 3" in err
    assert 'machine "furnace-01" (driver mqtt)\n  brokr: is not a known key; did you mean "broker"?' in err
    assert err.rstrip().endswith("4 problems in 1 file.")  # the missing broker: is reported too


def test_check_config_ok_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "example-site.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_load_raises_with_full_report(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text(BASE.replace("unit: degC", "unit: celcius"))
    with pytest.raises(ConfigError) as err:
        load(bad, SPECS, {})
    assert str(err.value).endswith("Gateway not started: 1 problem in 1 file.")


def test_schema_is_current() -> None:
    committed = (ROOT / "config" / "schema.json").read_text()
    assert committed == schema_text(SPECS), "config/schema.json is stale: run `kartech schema --out config/schema.json`"
    assert "machines" in json.loads(committed)["properties"]


# --- check-config refuses secrets written into the site file, wherever they hide ---------------------------
SECRETS_BASE = """\
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
SECRETS_ENV = {"WEBHOOK_TOKEN": "w" * 20, "INFLUX_URL": "http://u:p@influxdb:8086", "INFLUX_PASSWORD": "s3cret"}


def secret_problems(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "site.yaml", SPECS, SECRETS_ENV).problems]


def test_the_base_file_is_clean() -> None:
    assert secret_problems(SECRETS_BASE) == []


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
    assert SECRETS_BASE.count(old) == 1
    assert secret_problems(SECRETS_BASE.replace(old, new)) == [expected]


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
    assert secret_problems(SECRETS_BASE.replace(old, new)) == []
