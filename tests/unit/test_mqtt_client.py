"""drivers/mqtt/client.py: one meaning of sessions and TLS for every MQTT client of the gateway."""

from __future__ import annotations

import ssl

from drivers.mqtt.client import connect_args, tls_context
from drivers.mqtt.config import MqttBroker, TlsOptions


def test_mqtt5_persistent_session_keeps_the_session_for_its_expiry() -> None:
    b = MqttBroker(id="lab", protocol="mqtt5", session_expiry_s=3600, keepalive_s=20)
    args = connect_args(b, "persistent", receive_maximum=65535)
    assert args["keepalive"] == 20
    assert args["clean_start"] is False
    assert args["properties"].SessionExpiryInterval == 3600
    assert args["properties"].ReceiveMaximum == 65535


def test_mqtt5_clean_session_ends_with_the_connection() -> None:
    args = connect_args(MqttBroker(id="lab", protocol="mqtt5"))
    assert args["clean_start"] is True
    assert args["properties"].SessionExpiryInterval == 0
    assert not hasattr(args["properties"], "ReceiveMaximum")


def test_mqtt311_has_no_mqtt5_connect_options() -> None:
    assert connect_args(MqttBroker(id="lab", protocol="mqtt311"), "persistent") == {"keepalive": 30}


def test_tls_verifies_unless_told_otherwise() -> None:
    strict = tls_context(TlsOptions())
    assert (strict.verify_mode, strict.check_hostname) == (ssl.CERT_REQUIRED, True)
    bench = tls_context(TlsOptions(insecure_skip_verify=True))
    assert (bench.verify_mode, bench.check_hostname) == (ssl.CERT_NONE, False)
