"""Bambu Lab LAN driver: one MQTT connection per printer, to the broker the printer itself runs (TLS, port 8883).

Built with the project's MQTT client factory (`drivers.mqtt.client`: `new_client` for protocol, credentials and
keep-alive; `BrokerLink` for the connection, paho's loop on a thread of ours). Only the TLS context is the printer's own
(`drivers.bambu.tls`): the certificate names the serial, not the address, or is pinned.

On every connect the driver subscribes to `device/<serial>/report` and asks for a full report (`pushall`); it asks
again every `pushall_interval_s` (P1 and A1 printers send only changes otherwise and must not be asked often).
Reports are merged into the printer's held state (`report.PrinterState`) on the network thread and handed to the
pipeline with `emit_blocking`. The printers publish with QoS 0, so there is nothing to acknowledge.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from drivers.bambu.config import BambuMachine
from drivers.bambu.report import PrinterState
from drivers.bambu.tls import printer_context
from drivers.mqtt.client import BrokerLink, new_client
from drivers.mqtt.config import MqttBroker
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable

log = logging.getLogger(__name__)

USER = "bblp"
MAX_REPORT_BYTES = 1024 * 1024  # a full X1 report with four AMS units is about 20 kB
# CONNACK return codes of MQTT 3.1.1 (paho reports them as the MQTT 5 reason codes 134 and 135)
REFUSED = {134: (4, "bad user name or password"), 135: (5, "not authorised")}


def pushall(sequence_id: int) -> bytes:
    """The request for a full report (OpenBambuAPI mqtt.md, pushing.pushall)."""
    return json.dumps({"pushing": {"sequence_id": str(sequence_id), "command": "pushall", "version": 1,
                                   "push_target": 1}}).encode()


class BambuDriver:
    # a printer that was switched off is read again within seconds of coming back; a refused access code is
    # retried at the same pace, logged once by the supervisor
    retry = Retry(initial_s=1.0, cap_s=3.0, immediate_first=True)

    def __init__(self, machine: BambuMachine, site_id: str, *, host: str | None = None,
                 port: int | None = None) -> None:
        self.machine = machine
        self.name = f"bambu:{machine.id}"
        self.machine_ids = [machine.id]
        self.host = host or machine.host
        self.port = port if port is not None else machine.port
        self.client_id = f"kartech-{site_id}-{machine.id}"
        self.report_topic = f"device/{machine.serial}/report"
        self.request_topic = f"device/{machine.serial}/request"
        self.state = PrinterState(machine.id)  # kept across reconnects, like the job it follows
        self._sequence = 0

    def _where(self) -> str:
        return f'printer "{self.machine.id}" ({self.machine.serial}) at {self.host}:{self.port}'

    def _new_client(self) -> mqtt.Client:
        m = self.machine
        broker = MqttBroker(id=m.id, host=self.host, port=self.port, protocol="mqtt311", username=USER,
                            password=m.access_code, keepalive_s=m.keepalive_s, session="clean")
        client = new_client(broker, self.client_id, session="clean")
        try:
            client.tls_set_context(printer_context(m.tls, m.serial))
        except (OSError, ssl.SSLError) as err:
            raise DriverUnavailable(f"{self._where()}: cannot read tls.ca_file {m.tls.ca_file!r}: {err}") from err
        if m.tls.fingerprint_sha256 is not None:
            # the pin (checked in the handshake) replaces paho's own host name check, which would compare the
            # certificate with the address
            client.tls_insecure_set(True)
        client.connect_timeout = m.connect_timeout_s
        return client

    async def run(self, ctx: DriverContext) -> None:
        client = self._new_client()
        mid = self.machine.id

        def request_pushall() -> None:
            self._sequence += 1
            client.publish(self.request_topic, pushall(self._sequence), qos=0)

        def on_accept(c: mqtt.Client, _flags: mqtt.ConnectFlags) -> None:
            c.subscribe(self.report_topic, qos=0)
            request_pushall()

        def refused(rc: ReasonCode) -> str:
            code, why = REFUSED.get(rc.value, (rc.value, str(rc)))
            hint = ("; check access_code (the printer's LAN access code, Settings > Network on its screen; it "
                    "changes when LAN mode is switched off and on)" if rc.value in REFUSED else "")
            return f"{self._where()} refused the connection (CONNACK {code}: {why}){hint}"

        def explain(err: Exception) -> str | None:
            if not isinstance(err, ssl.SSLCertVerificationError):
                return None
            how = (f"the CA in {self.machine.tls.ca_file!r} and the serial {self.machine.serial} as its name"
                   if self.machine.tls.ca_file else "the pinned tls.fingerprint_sha256")
            return (f"{self._where()}: its TLS certificate does not match {how}: "
                    f"{err.verify_message or err}; the access code was not sent")

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if len(msg.payload) > MAX_REPORT_BYTES:
                ctx.bad_input("oversized", mid, f"{len(msg.payload)} bytes on {msg.topic}")
                return
            readings, bad = self.state.merge(msg.payload, time.time_ns())
            for b in bad:
                ctx.bad_input(b.reason, mid, b.detail)
            if readings:
                ctx.emit_blocking(readings)

        link = BrokerLink(ctx, client, self.name, self._where(), on_accept=on_accept, refused=refused)
        client.on_message = ctx.guard(on_message)
        async with link.open(self.host, self.port, connect_timeout_s=self.machine.connect_timeout_s,
                             explain=explain, keepalive=self.machine.keepalive_s):
            ctx.connected()
            while True:
                await link.until_lost(self.machine.pushall_interval_s)
                link.network.call(request_pushall)
