"""The virtual lab: every simulated machine of a site config, whatever its driver, started and stopped together.

`kartech demo` and `kartech simulate` use this; each driver's simulators read the same site file the gateway
reads, so what they publish is exactly what the gateway expects.
"""

from __future__ import annotations

import logging

from drivers.mqtt.config import MqttMachine
from drivers.opcua.config import OpcuaMachine
from drivers.serial.config import SerialMachine
from gateway.config.site import SiteConfig
from simulators.mqtt_lab import MqttLab, describe
from simulators.opcua_lab import OpcuaLab
from simulators.serial_lab import SerialLab

log = logging.getLogger(__name__)


class VirtualLab:
    def __init__(self, cfg: SiteConfig, *, seed: int = 1, opcua: OpcuaLab | None = None,
                 serial: SerialLab | None = None) -> None:
        """`opcua`, `serial`: simulators already built and started for this site (the demo starts them before the
        gateway, so that its drivers find them at once); `start()` starts only the parts built here."""
        self.cfg = cfg
        self.mqtt: list[MqttLab] = []
        for broker in cfg.mqtt.brokers:
            machines = [m for m in cfg.machines if isinstance(m, MqttMachine) and m.broker == broker.id]
            if machines:
                host = "127.0.0.1" if broker.host in ("0.0.0.0", "::") else broker.host
                self.mqtt.append(MqttLab(machines, site_id=cfg.site.id, host=host, port=broker.port, seed=seed,
                                         username=broker.username, password=broker.password))
        self._mqtt_stopped = False
        self._started_elsewhere = {id(x) for x in (opcua, serial) if x is not None}
        self.opcua = opcua or OpcuaLab([m for m in cfg.machines if isinstance(m, OpcuaMachine)], seed=seed)
        self.serial = serial or SerialLab([m for m in cfg.machines if isinstance(m, SerialMachine)], seed=seed)

    def start(self) -> None:
        for lab in self.mqtt:
            lab.start()
        for part in (self.opcua, self.serial):
            if id(part) not in self._started_elsewhere:
                part.start()

    def stop_mqtt(self) -> None:
        """Stop the MQTT simulators alone (first, when their broker is about to go away with the gateway)."""
        for lab in self.mqtt:
            lab.stop()
        self._mqtt_stopped = True

    def stop(self) -> None:
        if not self._mqtt_stopped:
            self.stop_mqtt()
        self.opcua.stop()
        self.serial.stop()

    def describe(self) -> list[str]:
        return [line for lab in self.mqtt for line in describe(lab)] + self.opcua.describe() + self.serial.describe()
