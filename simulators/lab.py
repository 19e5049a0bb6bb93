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
    def __init__(self, cfg: SiteConfig, *, seed: int = 1) -> None:
        self.cfg = cfg
        self.mqtt: list[MqttLab] = []
        for broker in cfg.mqtt.brokers:
            machines = [m for m in cfg.machines if isinstance(m, MqttMachine) and m.broker == broker.id]
            if machines:
                host = "127.0.0.1" if broker.host in ("0.0.0.0", "::") else broker.host
                self.mqtt.append(MqttLab(machines, site_id=cfg.site.id, host=host, port=broker.port, seed=seed,
                                         username=broker.username, password=broker.password))
        self.opcua = OpcuaLab([m for m in cfg.machines if isinstance(m, OpcuaMachine)], seed=seed)
        self.serial = SerialLab([m for m in cfg.machines if isinstance(m, SerialMachine)], seed=seed)

    def start(self) -> None:
        for lab in self.mqtt:
            lab.start()
        self.opcua.start()
        self.serial.start()

    def stop(self) -> None:
        for lab in self.mqtt:
            lab.stop()
        self.opcua.stop()
        self.serial.stop()

    def describe(self) -> list[str]:
        return [line for lab in self.mqtt for line in describe(lab)] + self.opcua.describe() + self.serial.describe()
