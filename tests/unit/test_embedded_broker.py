"""The embedded broker's access rules, derived from the site config (no broker started)."""

from __future__ import annotations

import pytest
from kit.ops import SPECS

from gateway.config.loader import check_text
from gateway.config.site import SiteConfig
from gateway.embedded_broker import (
    DEVICES,
    GATEWAY,
    AccessRules,
    Credentials,
    filters_overlap,
    rules_for,
    template_filter,
)
from gateway.errors import ConfigError

SITE = """\
site: {id: krg, name: Test}
mqtt: {brokers: [{id: lab, embedded: true, port: 0%s}, {id: other, host: 127.0.0.1}]}
machines:
  - {id: fdm-01, name: P, kind: printer, lab: printfarm, driver: mqtt, broker: lab,
     topics: [{topic: "lab/{site}/{machine}/r", fields: {state: {type: string}}}]}
state: {mqtt: {broker: lab, topic: "plant/{site}/{machine}/status"}}
notifications:
  channels:
    - {id: a, type: mqtt, broker: lab, topic: "alarms/{site}/{severity}/{machine}"}
    - {id: b, type: mqtt, broker: other, topic: "elsewhere/{machine}"}
"""


def site(extra: str = "", env: dict[str, str] | None = None) -> SiteConfig:
    result = check_text(SITE % extra, "site.yaml", SPECS, env or {})
    assert result.config is not None, [str(p) for p in result.problems]
    return result.config


def test_template_filters() -> None:
    assert template_filter("kartech/{site}/{machine}/state", "krg") == "kartech/krg/+/state"
    assert template_filter("kartech/{site}/alerts/{machine}", "krg") == "kartech/krg/alerts/+"
    assert template_filter("a/x-{machine}/b", "krg") == "a/+/b"


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("kartech/krg/m1/state", "kartech/#", True),
    ("kartech", "kartech/#", True),
    ("kartechx/a", "kartech/#", False),
    ("lab/krg/m1/r", "kartech/#", False),
    ("#", "kartech/krg/+/state", True),
    ("+/krg/m1/state", "kartech/krg/+/state", True),
    ("+/krg/m1", "kartech/krg/+/state", False),
    ("kartech/krg/m1/state/x", "kartech/krg/+/state", False),
])
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_rules_cover_the_configured_state_and_alert_topics_of_this_broker_only() -> None:
    cfg = site()
    rules = rules_for(cfg, cfg.mqtt.brokers[0])
    assert rules.gateway_topics == ("kartech/#", "plant/krg/+/status", "alarms/krg/+/+")
    assert rules.gateway_client_ids == frozenset({"kartech-krg-lab"})
    assert rules.gateway_client_id_prefixes == ("kartech-state-", "kartech-notify-")
    assert (rules.gateway.username, rules.devices.username) == (GATEWAY, DEVICES)
    assert rules.principal(GATEWAY, rules.gateway.password) == GATEWAY
    assert rules.principal(DEVICES, rules.devices.password) == DEVICES
    assert rules.principal(DEVICES, rules.gateway.password) is None
    assert rules.principal(None, None) is None
    again = rules_for(cfg, cfg.mqtt.brokers[0])
    assert again.gateway.password != rules.gateway.password  # drawn at every start
    assert rules.gateway.password not in repr(rules)


def test_site_credentials_become_the_gateways_own() -> None:
    cfg = site(', username: scada, password: "${BROKER_PW}"', {"BROKER_PW": "s3cret-from-env"})
    rules = rules_for(cfg, cfg.mqtt.brokers[0])
    assert rules.gateway == Credentials("scada", "s3cret-from-env")
    assert rules.devices.username == DEVICES


def test_half_credentials_and_the_devices_name_are_refused() -> None:
    cfg = site(", username: scada")
    with pytest.raises(ConfigError) as err:
        rules_for(cfg, cfg.mqtt.brokers[0])
    assert str(err.value) == ("mqtt.brokers lab: an embedded broker takes both username and password (the gateway's "
                              "own credentials) or neither (then they are drawn at every start)")
    with pytest.raises(ValueError, match='the user name "devices" is the embedded broker\'s own for the devices'):
        AccessRules.generate(gateway=Credentials(DEVICES, "x"))
