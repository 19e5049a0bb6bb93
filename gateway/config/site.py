"""The whole site file as one model; its `machines` union is assembled from the registered drivers."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Protocol, Union

from pydantic import BaseModel, Field, create_model

from drivers.mqtt.config import MqttSection
from gateway.config.billing import BillingSection
from gateway.config.models import (
    ApiSection,
    Health,
    MachineBase,
    SiteSection,
    Storage,
    Strict,
    Timestamps,
)
from gateway.config.operations import (
    AlertsSection,
    MaintenanceSection,
    NotificationsSection,
    ShiftsSection,
    StateSection,
)


class SiteConfig(Strict):
    """A site: its machines, where data goes, and how the API is reached."""

    site: SiteSection = Field(description="The site (the hub) this gateway serves.")
    storage: Storage = Field(default_factory=Storage, description="Where telemetry is kept.")
    mqtt: MqttSection = Field(default_factory=MqttSection, description="MQTT brokers.")
    api: ApiSection = Field(default_factory=ApiSection, description="HTTP API and web page.")
    machines: list[MachineBase] = Field(description="Every machine this gateway reads.")
    state: StateSection = Field(default_factory=StateSection, description="How machine states are derived.")
    alerts: AlertsSection = Field(default_factory=AlertsSection, description="Alert rules (ISA-18.2 lifecycle).")
    notifications: NotificationsSection = Field(default_factory=NotificationsSection,
                                                description="Where alerts are sent.")
    maintenance: MaintenanceSection = Field(default_factory=MaintenanceSection,
                                            description="Maintenance plans, due by real usage.")
    shifts: ShiftsSection = Field(default_factory=ShiftsSection, description="Shifts and planned downtime, "
                                  "for OEE.")
    timestamps: Timestamps = Field(default_factory=Timestamps, description="Source timestamps the gateway's clock "
                                   "cannot believe.")
    health: Health = Field(default_factory=Health, description="When the gateway reports itself degraded.")
    billing: BillingSection | None = Field(default=None, description="Usage billing: partners, attribution and "
                                           "rate cards (optional).")

    def section(self, key: str | None) -> BaseModel | None:
        """A driver's own top-level section (`DriverSpec.section`, e.g. "mqtt"); None for no key."""
        if key is None:
            return None
        value = getattr(self, key)
        assert isinstance(value, BaseModel), f"{key} is not a section of the site file"
        return value

    def machine(self, machine_id: str) -> MachineBase:
        for m in self.machines:
            if m.id == machine_id:
                return m
        raise KeyError(machine_id)


class _Declares(Protocol):
    """What the site model needs of a driver's spec (gateway.driver.DriverSpec): its machine model."""

    @property
    def machine_model(self) -> type[MachineBase]: ...


def site_model(specs: Mapping[str, _Declares]) -> type[SiteConfig]:
    """The site model whose `machines` are any of these drivers' machines (driver name -> spec)."""
    return _site_model(tuple(sorted((name, spec.machine_model) for name, spec in specs.items())))


@cache
def _site_model(models: tuple[tuple[str, type[MachineBase]], ...]) -> type[SiteConfig]:
    types = tuple(m for _, m in models)
    machine: Any = Annotated[Union[types], Field(discriminator="driver")] if len(types) > 1 else types[0]  # noqa: UP007
    model: type[SiteConfig] = create_model(
        "SiteConfig",
        __base__=SiteConfig,
        machines=(list[machine], Field(description="Every machine this gateway reads.")),
    )
    return model
