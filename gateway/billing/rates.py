"""The prices that apply to one machine for one partner tier: the first rate card naming the machine, else the
first naming its kind; the card's tier prices replace its own where given."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.config.billing import BillingSection, Material, RateCard, Tier


@dataclass(frozen=True, slots=True)
class Prices:
    card: int  # index under billing.rates
    per_running_hour: Decimal
    per_reserved_hour: Decimal | None
    minimum_charge: Decimal
    increment_min: int
    setup_fee: Decimal
    per_kwh: Decimal | None
    material: str | None


def card_for(billing: BillingSection, machine: str, kind: str) -> tuple[int, RateCard] | None:
    for i, card in enumerate(billing.rates):
        if machine in card.machines:
            return i, card
    for i, card in enumerate(billing.rates):
        if kind in card.kinds:
            return i, card
    return None


def prices_for(billing: BillingSection, machine: str, kind: str, tier: Tier) -> Prices | None:
    """None when no rate card prices the machine (its usage is listed at zero)."""
    found = card_for(billing, machine, kind)
    if found is None:
        return None
    i, card = found
    t = card.tiers.get(tier)

    def pick(own: Decimal, override: Decimal | None) -> Decimal:
        return override if override is not None else own

    return Prices(
        card=i,
        per_running_hour=pick(card.per_running_hour, t.per_running_hour if t else None),
        per_reserved_hour=(t.per_reserved_hour if t and t.per_reserved_hour is not None
                           else card.per_reserved_hour),
        minimum_charge=pick(card.minimum_charge, t.minimum_charge if t else None),
        increment_min=card.increment_min,
        setup_fee=pick(card.setup_fee, t.setup_fee if t else None),
        per_kwh=card.per_kwh,
        material=card.material)


def material(billing: BillingSection, material_id: str | None) -> Material | None:
    for m in billing.materials:
        if m.id == material_id:
            return m
    return None
