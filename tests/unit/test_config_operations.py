"""Config errors of the operations sections as a technician reads them: exact text, with the file's line."""

from __future__ import annotations

from kit.ops import MACHINES, SPECS

from gateway.config.loader import check_text
from gateway.config.references import cross_checks

HEAD = """\
site: {id: krg, name: Test}
mqtt: {brokers: [{id: lab, host: 127.0.0.1}]}
machines:
  - {id: fdm-01, name: P, kind: printer, lab: printfarm, driver: mqtt, broker: lab,
     topics: [{topic: "lab/{site}/{machine}/r", fields: {state: {type: string}}}]}
"""


def problems(tail: str) -> list[str]:
    return [str(p) for p in check_text(HEAD + tail, "site.yaml", SPECS, {}).problems]


def test_state_rules_are_checked_with_their_lines() -> None:
    assert problems("""\
state:
  kinds:
    cnc:
      rules:
        - {signal: alarm_code, above: 0, state: eror}
        - {signal: alarm_code, state: error}
        - {signal: execution_state, equals: Stopped, in: [Held], state: paused}
        - {signal: alarm_code, abov: 0, state: error}
    printer:
      state_map: {Printing: running}
""") == [
        'site.yaml:10 — state\n  kinds.cnc.rules[0].state: "eror" is not allowed; use one of offline, idle, '
        'running, paused, error, maintenance; did you mean "error"?',
        "site.yaml:11 — state\n  kinds.cnc.rules[1]: rule for error needs a condition on signal alarm_code: "
        "equals, in, above or below (e.g. above: 0)",
        "site.yaml:12 — state\n  kinds.cnc.rules[2]: give equals or in, not both",
        "site.yaml:13 — state\n  kinds.cnc.rules[3].abov: is not a known key",
        "site.yaml:14 — state\n  kinds.printer: state_map is replaced by rules: write one rule per value, e.g. "
        "rules: [{signal: state, equals: Running Program, state: running}]",
    ]


def test_unknown_placeholder_in_a_message() -> None:
    assert problems("""\
alerts:
  rules:
    - id: hot
      type: threshold
      severity: high
      signal: nozzle_temp
      above: 290
      message: {en: "{machine} at {temp}", ru: "{machine}: {value}"}
""") == [
        "site.yaml:13 — alerts\n  rules[0].message.en: \"{machine} at {temp}\" has unknown placeholder {temp}; use "
        "{machine}, {machine_name}, {kind}, {lab}, {rule}, {severity}, {signal}, {value}, {unit}, {limit}, "
        "{state}, {duration}, {count}"]


def test_unknown_rule_type_and_severity() -> None:
    assert problems("""\
alerts:
  rules:
    - {id: a, type: treshold, severity: high, message: {en: x, ru: y}}
    - {id: b, type: state, states: [error], severity: urgent, message: {en: x, ru: y}}
""") == [
        'site.yaml:8 — alerts\n  rules[0].type: "treshold" is not allowed; use one of threshold, rate, state, '
        "condition, offline",
        'site.yaml:9 — alerts\n  rules[1].severity: "urgent" is not allowed; use one of critical, high, medium, low',
    ]


def test_threshold_needs_one_limit_and_maintenance_needs_a_limit() -> None:
    assert problems("""\
alerts:
  rules:
    - {id: a, type: threshold, signal: t, severity: low, message: {en: x, ru: y}}
maintenance:
  plans:
    - {id: nozzle, name: Nozzle, kinds: [printer], every: {}}
shifts:
  calendar: [{id: day, start: "8:00", end: "16:00"}]
""") == [
        "site.yaml:8 — alerts\n  rules[0]: needs exactly one of above or below",
        "site.yaml:11 — maintenance\n  plans[0]: every: needs at least one of running_h, cycles, material_m, days",
        'site.yaml:13 — shifts\n  calendar[0].start: "8:00" is not a time of day; write HH:MM, e.g. 08:00 '
        "(24:00 for midnight at the end)",
    ]


def test_literal_telegram_token_is_refused() -> None:
    assert problems("""\
notifications:
  channels:
    - {id: tg, type: telegram, token: "123:abc", chat_id: "-1"}
""") == [
        "site.yaml:8 — notifications\n  channels[0].token: is written literally; write it as ${ENV_VAR} so the "
        "secret stays out of the file (e.g. token: ${KARTECH_NOTIFICATIONS_CHANNELS_TOKEN})"]


def test_cross_checks_name_the_unknown_reference_and_the_known_ones() -> None:
    text = "site: {id: krg, name: Test hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES + """
alerts:
  rules:
    - {id: a, type: state, states: [error], machines: [fdm-1], severity: low, message: {en: x, ru: y}}
    - {id: a, type: state, states: [error], labs: [printfarm], severity: low, message: {en: x, ru: y}}
notifications:
  channels:
    - {id: m, type: mqtt, broker: lan}
maintenance:
  plans:
    - {id: n, name: N, kinds: [printers], every: {days: 1}}
"""
    assert [str(p) for p in check_text(text, "site.yaml", SPECS, {}).problems] == [
        'site.yaml:15 — alerts\n  rules[0].machines[0]: "fdm-1" is not a known machine; did you mean "fdm-01"? '
        "(known: cnc-01, fdm-01, furnace-01, plug-01)",
        'site.yaml:16 — alerts\n  rules[1].id: "a" is already used by rules[0]; rule ids must be unique',
        'site.yaml:19 — notifications\n  channels[0].broker: "lan" is not a known broker; did you mean "lab"? '
        "(known: lab)",
        'site.yaml:22 — maintenance\n  plans[0].kinds[0]: "printers" is not a known machine kind; did you mean '
        '"printer"? (known: cnc, furnace, laser, printer)',
    ]


def test_shipped_configs_have_no_dangling_references() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {"INFLUX_TOKEN": "t" * 20, "MQTT_PASSWORD": "p", "KARTECH_SCREEN_TOKEN": "s" * 20,
           "KARTECH_TECH_TOKEN": "k" * 20, "KARTECH_ADMIN_TOKEN": "a" * 20, "TELEGRAM_BOT_TOKEN": "1:x",
           "SMTP_PASSWORD": "p", "OPCUA_PASSWORD": "p", "WEBHOOK_TOKEN": "w"}
    for name in ("demo.yaml", "example-site.yaml"):
        result = check_text((root / "config" / name).read_text(), name, SPECS, env, require_env=False)
        assert result.problems == [], [str(p) for p in result.problems]
        assert result.config is not None
        assert cross_checks(result.config) == []
