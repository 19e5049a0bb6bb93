"""End to end: a badge reader at a laser cutter (a Tasmota RFID reader) publishes swipes to a real Mosquitto
next to the cutter's smart plug (power and an energy meter); the gateway (a real Runtime) checks the user in and
out, and the usage ledger has the check-in with its running time and energy, billed to the user's partner."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from pathlib import Path

from kit.poll import until
from kit.runtime import SPECS, mqtt_site, publish, running

from gateway.runtime import Runtime
from simulators.services import Mosquitto

SITE = """
machines:
  - id: laser-01
    name: Laser cutter
    kind: laser
    driver: mqtt
    broker: lab
    expected_interval_s: 5
    topics:
      - topic: lab/{site}/{machine}/plug
        fields:
          power_w: {unit: W}
          energy_kwh: {unit: kWh}
      - topic: tele/laser-01-reader/SENSOR    # a Tasmota RDM6300 RFID reader
        fields:
          badge: {path: RDM6300.UID, type: string}
state:
  kinds:
    laser: {busy_after_s: 0, idle_after_s: 0}
billing:
  vat_pct: 12
  partners: [{id: acme, name: ACME Mining R&D, tier: industrial}]
  users: [{id: aigerim, name: Aigerim S., partner: acme, badges: ["04A1B2C3"]}]
  rates: [{kinds: [laser], per_running_hour: 6000, per_reserved_hour: 1000, per_kwh: 30}]
"""


async def test_badge_swipes_over_mqtt_check_a_user_in_and_out(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sid = f"s{uuid.uuid4().hex[:6]}"
    plug, reader = f"lab/{sid}/laser-01/plug", "tele/laser-01-reader/SENSOR"

    def power(w: float, kwh: float) -> tuple[str, str]:
        return plug, json.dumps({"power_w": w, "energy_kwh": kwh})

    def swipe(uid: str) -> tuple[str, str]:
        return reader, json.dumps({"Time": "2026-11-30T10:00:00", "RDM6300": {"UID": uid}})

    async with running(Runtime(mqtt_site(mosquitto.port, sid, tmp_path, SITE), SPECS, serve_api=False)) as rt:
        assert rt.services is not None
        checkins = rt.services.usage.checkins
        await asyncio.to_thread(publish, mosquitto.port, [power(5.0, 12.0)])
        await until(lambda: rt.stage.machine("laser-01")["state"] == "idle", timeout_s=20.0)
        await asyncio.to_thread(publish, mosquitto.port, [swipe("04A1B2C3")])
        await until(lambda: checkins.open_on("laser-01") is not None, timeout_s=20.0)
        await asyncio.to_thread(publish, mosquitto.port, [power(900.0, 12.0)])
        await until(lambda: rt.stage.machine("laser-01")["state"] == "running", timeout_s=20.0)
        await asyncio.to_thread(publish, mosquitto.port, [power(950.0, 12.25), power(5.0, 12.5)])
        await until(lambda: rt.stage.machine("laser-01")["state"] == "idle", timeout_s=20.0)
        await asyncio.to_thread(publish, mosquitto.port, [swipe("0000DEAD"), swipe("04A1B2C3")])
        await until(lambda: rt.services is not None and len(rt.services.usage.entries()) == 1, timeout_s=20.0)
        [entry] = rt.services.usage.entries()
        assert checkins.unknown_badges == 1
    assert (entry.source, entry.partner, entry.user, entry.energy_kwh) == ("checkin", "acme", "aigerim",
                                                                          Decimal("0.5"))
    assert entry.running_ns > 0
    assert entry.reserved_ns > 0
    assert entry.running_ns + entry.reserved_ns == entry.end_ns - entry.start_ns
