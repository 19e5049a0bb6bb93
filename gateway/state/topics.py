"""Retained MQTT state topics: `kartech/{site}/{machine}/state` holds each machine's current state as JSON.

Other systems (a SCADA, a Node-RED flow, a lab-door display) subscribe and get the current state at once thanks
to the retained flag. Publishing runs on paho's own network thread; a broker that is away only delays updates
(paho reconnects, and the latest state of every machine is published again on each connection).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

from drivers.mqtt.client import connect_args, new_client
from drivers.mqtt.config import MqttBroker
from gateway.config.operations import StateTopics
from gateway.state.events import Event
from gateway.state.model import iso

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "kartech-state-"  # followed by a random tail, new at every start


class StatePublisher:
    def __init__(self, cfg: StateTopics, broker: MqttBroker, site_id: str) -> None:
        self.cfg = cfg
        self.broker = broker
        self.site_id = site_id
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._client = new_client(broker, f"{CLIENT_ID_PREFIX}{uuid.uuid4().hex[:8]}", reconnect=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect

    def topic(self, machine: str) -> str:
        return self.cfg.topic.replace("{site}", self.site_id).replace("{machine}", machine)

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, **connect_args(self.broker))
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        with self._lock:
            latest = list(self._latest.items())
        for machine, body in latest:
            self._send(machine, body)

    def _send(self, machine: str, body: dict[str, Any]) -> None:
        self._client.publish(self.topic(machine), json.dumps(body, ensure_ascii=False), qos=self.cfg.qos, retain=True)

    def publish(self, machine: str, state: str, since_ns: int | None, basis: str = "") -> None:
        body = {"machine": machine, "state": state, "since": iso(since_ns), "basis": basis}
        with self._lock:
            self._latest[machine] = body
        if self._client.is_connected():
            self._send(machine, body)

    def on_event(self, event: Event) -> None:
        if event.type == "state":
            self.publish(event.machine, str(event.data.get("to")), event.ts_ns, str(event.data.get("basis", "")))
