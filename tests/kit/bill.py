"""Shared test data for the billing tests: a site with a billing section and builders of state-engine events in
local time (Asia/Almaty, UTC+5 since 2024-03-01)."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any

from gateway.billing.attribution import Attributor
from gateway.billing.ledger import LedgerEntry, entries_from_events
from gateway.config.billing import BillingSection
from gateway.config.site import SiteConfig
from gateway.state.events import Event
from kit.ops import site

NS = 1_000_000_000
TZ = zoneinfo.ZoneInfo("Asia/Almaty")

BILLING = """\
billing:
  vat_pct: 12
  gap_grace_s: 300
  partners:
    - {id: acme, name: ACME Mining R&D, tier: industrial, discount_pct: 10}
    - {id: lab, name: Materials lab, tier: academic}
  projects:
    - {id: ore, partner: acme, name: Ore sorting}
    - {id: tools, partner: acme, name: Tooling}
  users:
    - {id: aigerim, name: Aigerim S., partner: acme, project: ore, badges: ["04A1B2C3"]}
  attribution:
    - {prefix: ACME_pin, partner: acme, project: tools}
    - {prefix: ACME_, partner: acme, project: ore}
    - {regex: "^LAB-", partner: lab}
  materials:
    - {id: pla, name: PLA 1.75 mm, per_gram: 25, grams_per_metre: 2.98}
  rates:
    - kinds: [printer]
      per_running_hour: 1200
      increment_min: 15
      setup_fee: 500
      minimum_charge: 1000
      material: pla
      tiers: {academic: {per_running_hour: 600}}
    - machines: [cnc-01]
      per_running_hour: 9000
      increment_min: 15
      minimum_charge: 4500
      setup_fee: 2000
"""


def config(billing: str = BILLING) -> SiteConfig:
    return site(billing)


def billing(text: str = BILLING) -> BillingSection:
    b = config(text).billing
    assert b is not None
    return b


KINDS = {"fdm-01": "printer", "cnc-01": "cnc", "furnace-01": "furnace", "plug-01": "laser"}


def at(text: str) -> int:
    """Local wall-clock time 'YYYY-MM-DD HH:MM[:SS]' in Asia/Almaty as UTC ns."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return int(datetime.strptime(text, fmt).replace(tzinfo=TZ).timestamp()) * NS


def state(when: str, machine: str, to: str, **data: Any) -> Event:
    return Event(at(when), machine, "state", {"from": None, "to": to, **data})


def job(machine: str, name: str, start: str, end: str, *, material_m: float = 0.0,
        gaps: tuple[tuple[str, str], ...] = ()) -> list[Event]:
    """A job the machine runs from start to end, with offline gaps (from, back) in between."""
    out = [state(start, machine, "running"), Event(at(start), machine, "job_start", {"job": name, "job_id": None})]
    for off, back in gaps:
        out += [state(off, machine, "offline"), state(back, machine, "running")]
    out += [state(end, machine, "idle"),
            Event(at(end), machine, "job_end", {"job": name, "job_id": None, "result": "completed",
                                                "duration_s": (at(end) - at(start)) / NS,
                                                "material_m": material_m})]
    return out


# The scripted month (March 2025) — hand computations in test_billing_statement.py
MONTH_EVENTS: list[Event] = [
    *job("fdm-01", "ACME_bracket.gcode", "2025-03-03 10:00", "2025-03-03 12:07", material_m=10.0),  # J1
    *job("cnc-01", "ACME_shaft", "2025-03-10 23:30", "2025-03-11 01:10"),  # J2 across midnight
    *job("cnc-01", "ACME_pin", "2025-03-12 14:00", "2025-03-12 14:05:30"),  # J3 minimum charge
    *job("fdm-01", "random.gcode", "2025-03-15 10:00", "2025-03-15 10:30"),  # J7 unattributed
    *job("fdm-01", "LAB-tensile.gcode", "2025-03-17 09:00", "2025-03-17 10:00"),  # J6 another partner
    *job("fdm-01", "ACME_cover.gcode", "2025-03-20 08:00", "2025-03-20 10:00",
         gaps=(("2025-03-20 09:00", "2025-03-20 09:03"),)),  # J4 short gap
    *job("cnc-01", "ACME_long", "2025-03-25 09:00", "2025-03-25 11:30",
         gaps=(("2025-03-25 10:00", "2025-03-25 11:00"),)),  # J8 long gap
    *job("fdm-01", "ACME_housing.gcode", "2025-03-31 22:00", "2025-04-01 02:00", material_m=5.0),  # J5 month end
]


def month_entries(events: list[Event] | None = None) -> list[LedgerEntry]:
    b = billing()
    return entries_from_events(MONTH_EVENTS if events is None else events, Attributor(b.attribution),
                               grace_s=b.gap_grace_s)
