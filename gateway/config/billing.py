"""Site-file section `billing:` — partners, projects, users, attribution rules, materials and rate cards.

Every field carries its description, so the JSON Schema, the README and the error text share one source. Money
is written as plain numbers (`per_running_hour: 4500`) and read as exact decimals in the site currency
(`site.currency`). References a single model cannot see (an unknown machine, kind, partner, project or
material) are checked in gateway/config/references.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import SLUG, Strict

Tier = Literal["academic", "startup", "industrial"]
TIERS: tuple[Tier, ...] = ("academic", "startup", "industrial")
Loc = tuple[str | int, ...]


class Partner(Strict):
    """An organisation whose usage is billed: an academic lab, a startup, an industrial partner."""

    id: str = Field(pattern=SLUG, description="Partner id, used in attribution rules, statements and tokens.")
    name: str = Field(min_length=1, description="Name printed on the statement.")
    tier: Tier = Field(description="academic | startup | industrial: which tier prices of the rate cards apply.")
    discount_pct: Decimal = Field(default=Decimal(0), ge=0, le=100, description="Contract discount in percent, "
                                  "taken off the statement's subtotal before tax.")


class Project(Strict):
    """A project of a partner; statements have a subtotal per project."""

    id: str = Field(pattern=SLUG, description="Project id, unique in the file.")
    partner: str = Field(description="Id of the partner (under billing.partners) the project belongs to.")
    name: str = Field(min_length=1, description="Name printed on the statement.")


class User(Strict):
    """A person who uses machines on behalf of a partner (checks in, or shows a badge)."""

    id: str = Field(pattern=SLUG, description="User id.")
    name: str = Field(min_length=1, description="Full name.")
    partner: str = Field(description="Id of the partner the user works for.")
    project: str | None = Field(default=None, description="Default project of the user's usage.")
    badges: list[str] = Field(default_factory=list, description="Badge ids (as read by a badge reader over serial "
                              "or MQTT) that identify the user.")


class AttributionRule(Strict):
    """Usage whose job name (a print file, an OPC UA program name) matches goes to a partner and project.
    The first matching rule wins."""

    prefix: str | None = Field(default=None, min_length=1, description="The job name starts with this "
                               "(case-sensitive), e.g. ACME_.")
    regex: str | None = Field(default=None, min_length=1, description="The job name matches this regular "
                              "expression anywhere (Python syntax), e.g. ^(ACME|acme)-.")
    machines: list[str] = Field(default_factory=list, description="Only jobs of these machines (default: all).")
    partner: str = Field(description="Id of the partner the job is billed to.")
    project: str | None = Field(default=None, description="Id of one of the partner's projects.")

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as err:
                raise ValueError(f"is not a valid regular expression ({err}); e.g. ^ACME_") from None
        return v

    @model_validator(mode="after")
    def _one(self) -> AttributionRule:
        if (self.prefix is None) == (self.regex is None):
            raise ValueError("needs exactly one of prefix or regex, e.g. prefix: ACME_")
        return self


class Material(Strict):
    """A material billed by weight or by piece."""

    id: str = Field(pattern=SLUG, description="Material id, named by rate cards and jobs (e.g. pla-175).")
    name: str = Field(min_length=1, description="Name printed on the statement (e.g. PLA 1.75 mm).")
    per_gram: Decimal | None = Field(default=None, ge=0, description="Price per gram.")
    per_unit: Decimal | None = Field(default=None, ge=0, description="Price per piece (a sheet, a blank).")
    grams_per_metre: Decimal | None = Field(default=None, gt=0, description="Weight of one metre of filament, "
                                            "to turn the length printers report into grams (PLA 1.75 mm: 2.98).")

    @model_validator(mode="after")
    def _price(self) -> Material:
        if (self.per_gram is None) == (self.per_unit is None):
            raise ValueError("needs exactly one of per_gram or per_unit")
        if self.per_gram is not None and self.grams_per_metre is None:
            raise ValueError("is priced per gram, so it needs grams_per_metre (printers report filament in "
                             "metres), e.g. grams_per_metre: 2.98")
        return self


class TierPrices(Strict):
    """Prices of one tier that differ from the rate card's own; unset keys keep the card's."""

    per_running_hour: Decimal | None = Field(default=None, ge=0, description="Price per running hour.")
    per_reserved_hour: Decimal | None = Field(default=None, ge=0, description="Price per reserved hour.")
    minimum_charge: Decimal | None = Field(default=None, ge=0, description="Minimum charge for machine time "
                                           "per job.")
    setup_fee: Decimal | None = Field(default=None, ge=0, description="Fee per job.")


class RateCard(Strict):
    """Prices of machine time for some machines or machine kinds. A card naming a machine wins over one naming
    its kind; among equals the first card wins."""

    id: str | None = Field(default=None, pattern=SLUG, description="Stable id of the card, named by the API "
                           "(PATCH /api/v1/rates/{id}) and its audit records; default rate-N, N the card's "
                           "position under billing.rates counting from 1. Give one before reordering the cards "
                           "once the API has changed them.")
    machines: list[str] = Field(default_factory=list, description="Machine ids the card prices.")
    kinds: list[str] = Field(default_factory=list, description="Machine kinds the card prices.")
    per_running_hour: Decimal = Field(ge=0, description="Price per hour in the running state during a job.")
    per_reserved_hour: Decimal | None = Field(default=None, ge=0, description="Price per hour checked in but "
                                              "not running (unset: reserved time is not billed).")
    minimum_charge: Decimal = Field(default=Decimal(0), ge=0, description="A job's machine time costs at least "
                                    "this much (the difference is a separate amount on its first line).")
    increment_min: int = Field(default=1, ge=1, le=1440, description="Time is billed per started increment of "
                               "this many minutes (15: per started quarter hour).")
    setup_fee: Decimal = Field(default=Decimal(0), ge=0, description="Fee per job, on the job's first line.")
    material: str | None = Field(default=None, description="Id of the material (under billing.materials) these "
                                 "machines use when the job does not say.")
    per_kwh: Decimal | None = Field(default=None, ge=0, description="Price per kWh where a power meter measures "
                                    "the machine (unset: energy is not billed).")
    tiers: dict[Tier, TierPrices] = Field(default_factory=dict, description="Prices per partner tier "
                                          "(academic, startup, industrial) that differ from the card's own.")

    @model_validator(mode="after")
    def _applies(self) -> RateCard:
        if not self.machines and not self.kinds:
            raise ValueError("needs machines or kinds it applies to")
        return self


def rate_id(index: int, card: RateCard) -> str:
    """The card's id: its own, else rate-N from its position (index 0 is rate-1)."""
    return card.id or f"rate-{index + 1}"


class BillingSection(Strict):
    """Usage billing: who uses the machines and what machine time, material and energy cost."""

    vat_pct: Decimal = Field(ge=0, le=100, description="VAT rate in percent (configuration, never a constant: "
                             "rates change by law).")
    vat: Literal["added", "included"] = Field(default="added", description="added: prices are net and VAT is "
                                              "added to the total; included: prices include VAT and the "
                                              "statement shows the VAT contained in the total.")
    gap_grace_s: float = Field(default=300.0, ge=0, description="A telemetry gap (the machine offline) shorter "
                               "than this neither splits a job's session nor is billed; a longer one ends the "
                               "session at the last reading.")
    checkin_max_h: float = Field(default=12.0, gt=0, le=168, description="A check-in still open after this many "
                                 "hours is closed at that limit (a forgotten check-out never bills the night).")
    partners: list[Partner] = Field(default_factory=list, description="Partners billed for their usage.")
    projects: list[Project] = Field(default_factory=list, description="Projects of the partners.")
    users: list[User] = Field(default_factory=list, description="Users and their badges.")
    attribution: list[AttributionRule] = Field(default_factory=list, description="Rules from job names to "
                                               "partners and projects; the first that matches wins.")
    materials: list[Material] = Field(default_factory=list, description="Material prices.")
    rates: list[RateCard] = Field(default_factory=list, description="Rate cards per machine or machine kind.")

    def user(self, user_id: str) -> User:
        for u in self.users:
            if u.id == user_id:
                return u
        raise KeyError(user_id)

    def badge_user(self, badge: str) -> User | None:
        """The user a badge id belongs to (ids compared exactly, as the reader sends them), or None."""
        return next((u for u in self.users if badge in u.badges), None)

    def partner(self, partner_id: str) -> Partner:
        for p in self.partners:
            if p.id == partner_id:
                return p
        raise KeyError(partner_id)
