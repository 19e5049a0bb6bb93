"""HTTP API of the billing catalog: partners, projects, users and rate cards as admins manage them on top of the
site file (gateway/billing/catalog.py), and the audit of every change.

Admins only: a partner token gets 403 here (it reads its own usage and statements in gateway/api/billing.py), as do
technicians and viewers. Request bodies are checked for their types here; what the site file's models and
reference checks refuse is answered 422 with check-config's words and location (`billing.partners[2].tier: ...`).
A rate card change takes effect from its `valid_from` (default: now), never inside a closed month (409).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Principal, context_of, current_principal, require_role
from gateway.api.context import ApiContext
from gateway.api.operations import ErrorOut, services_of
from gateway.api.times import parse_time
from gateway.billing.catalog import (
    ALWAYS,
    CatalogError,
    Change,
    Exists,
    List,
    NoBilling,
    RateInClosedMonth,
    Refused,
    UnknownItem,
)
from gateway.config.billing import TIERS, BillingSection, Partner, Project, RateCard, User
from gateway.services import Services
from gateway.state.model import iso


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


def _d(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].description or ""


router = APIRouter(tags=["billing admin"], dependencies=[Depends(current_principal)],
                   responses={401: _error("missing or bad token"),
                              403: _error("only admins manage partners, projects, users and rate cards"),
                              404: _error("no such item, or no billing section in the site file"),
                              422: _error("the body is not valid, or the change gives a billing section the site "
                                          "file's checks refuse; `detail` says where and why, as check-config "
                                          "does"),
                              503: _error("the business store is not running on this gateway")})
Ctx = Annotated[ApiContext, Depends(context_of)]
Admin = Annotated[Principal, Depends(require_role("admin"))]
ItemId = Annotated[str, Path(min_length=1, max_length=200, description="the item's id")]
_BODY: dict[int | str, dict[str, Any]] = {400: _error("the body is not UTF-8 text"),
                                          413: _error("request body too large (api.max_body_bytes)")}
_CREATED: dict[int | str, dict[str, Any]] = {409: _error("an item with this id exists already"), **_BODY}
_RATE: dict[int | str, dict[str, Any]] = {409: _error("valid_from is inside or before a closed month, or a card "
                                                      "with this id exists already"), **_BODY}


def _change(ops: Services, do: Any) -> Change:
    """Make a catalog change; its errors as HTTP answers."""
    try:
        change: Change = do()
    except (NoBilling, UnknownItem) as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from err
    except (Exists, RateInClosedMonth) as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    except Refused as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"refused: {err}") from err
    except CatalogError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from err
    ops.billing()  # the usage ledger assigns to what is in effect now
    return change


def _section(ops: Services) -> BillingSection:
    b = ops.billing()
    if b is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "billing is not configured on this gateway (no billing "
                            "section in the site file)")
    return b


def _valid_from(text: str | None) -> int | None:
    return None if text is None else parse_time("valid_from", text)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- partners ---------------------------------------------------------------------------------------------------
class ProjectRef(BaseModel):
    id: str
    name: str


class PartnerOut(BaseModel):
    id: str
    name: str
    tier: str = Field(description=_d(Partner, "tier"))
    discount_pct: str = Field(description="contract discount in percent (exact decimal as text)")
    projects: list[ProjectRef] = Field(description="the partner's projects")


class PartnerIn(_Body):
    id: str = Field(description=_d(Partner, "id"))
    name: str = Field(description=_d(Partner, "name"))
    tier: str = Field(description=_d(Partner, "tier"), json_schema_extra={"enum": list(TIERS)})
    discount_pct: Decimal = Field(default=Decimal(0), description=_d(Partner, "discount_pct"))


class PartnerPatch(_Body):
    name: str | None = Field(default=None, description=_d(Partner, "name"))
    tier: str | None = Field(default=None, description=_d(Partner, "tier"), json_schema_extra={"enum": list(TIERS)})
    discount_pct: Decimal | None = Field(default=None, description=_d(Partner, "discount_pct"))


def _partner_out(b: BillingSection, p: dict[str, Any] | Partner) -> PartnerOut:
    d = p.model_dump(mode="json") if isinstance(p, Partner) else p
    return PartnerOut(id=d["id"], name=d["name"], tier=d["tier"], discount_pct=str(d["discount_pct"]),
                      projects=[ProjectRef(id=x.id, name=x.name) for x in b.projects if x.partner == d["id"]])


@router.get("/api/v1/partners", response_model=list[PartnerOut])
def partners(ctx: Ctx, who: Admin) -> list[PartnerOut]:
    """Partners in effect now, with their tier, contract discount and projects: the site file's with the changes
    made through the API."""
    b = _section(services_of(ctx))
    return [_partner_out(b, p) for p in b.partners]


@router.post("/api/v1/partners", response_model=PartnerOut, status_code=status.HTTP_201_CREATED,
             responses=_CREATED)
def add_partner(body: PartnerIn, ctx: Ctx, who: Admin) -> PartnerOut:
    """Add a partner (audited: GET /api/v1/billing/changes)."""
    ops = services_of(ctx)
    ch = _change(ops, lambda: ops.catalog.add("partners", body.model_dump(), by=who.name, now_ns=ops.clock()))
    return _partner_out(_section(ops), ch.after)


@router.patch("/api/v1/partners/{partner_id}", response_model=PartnerOut, responses=_BODY)
def patch_partner(partner_id: ItemId, body: PartnerPatch, ctx: Ctx, who: Admin) -> PartnerOut:
    """Change a partner's name, tier or contract discount, from now on (audited). A month's statement uses the
    partner as it was at the month's end, so closed months keep their statements."""
    ops = services_of(ctx)
    ch = _change(ops, lambda: ops.catalog.patch("partners", partner_id, body.model_dump(exclude_unset=True),
                                                by=who.name, now_ns=ops.clock()))
    return _partner_out(_section(ops), ch.after)


# --- projects ---------------------------------------------------------------------------------------------------
class ProjectOut(BaseModel):
    id: str
    partner: str
    name: str


class ProjectIn(_Body):
    id: str = Field(description=_d(Project, "id"))
    partner: str = Field(description=_d(Project, "partner"))
    name: str = Field(description=_d(Project, "name"))


@router.get("/api/v1/projects", response_model=list[ProjectOut])
def projects(ctx: Ctx, who: Admin) -> list[ProjectOut]:
    """Projects in effect now (site file and API)."""
    return [ProjectOut(**p.model_dump()) for p in _section(services_of(ctx)).projects]


@router.post("/api/v1/projects", response_model=ProjectOut, status_code=status.HTTP_201_CREATED,
             responses=_CREATED)
def add_project(body: ProjectIn, ctx: Ctx, who: Admin) -> ProjectOut:
    """Add a project of a partner (audited)."""
    ops = services_of(ctx)
    ch = _change(ops, lambda: ops.catalog.add("projects", body.model_dump(), by=who.name, now_ns=ops.clock()))
    return ProjectOut(**ch.after)


# --- users ------------------------------------------------------------------------------------------------------
class UserOut(BaseModel):
    id: str
    name: str
    partner: str
    project: str | None
    badges: list[str]


class UserIn(_Body):
    id: str = Field(description=_d(User, "id"))
    name: str = Field(description=_d(User, "name"))
    partner: str = Field(description=_d(User, "partner"))
    project: str | None = Field(default=None, description=_d(User, "project"))
    badges: list[str] = Field(default_factory=list, description=_d(User, "badges"))


class UserPatch(_Body):
    name: str | None = Field(default=None, description=_d(User, "name"))
    project: str | None = Field(default=None, description=_d(User, "project") + " null: none.")
    badges: list[str] | None = Field(default=None, description=_d(User, "badges") + " The whole list.")


@router.get("/api/v1/billing/users", response_model=list[UserOut])
def users(ctx: Ctx, who: Admin) -> list[UserOut]:
    """Users and their badges in effect now (site file and API). Not the API's tokens (POST /api/v1/users)."""
    return [UserOut(**u.model_dump()) for u in _section(services_of(ctx)).users]


@router.post("/api/v1/billing/users", response_model=UserOut, status_code=status.HTTP_201_CREATED,
             responses=_CREATED)
def add_user(body: UserIn, ctx: Ctx, who: Admin) -> UserOut:
    """Add a user of a partner with their badges (audited)."""
    ops = services_of(ctx)
    ch = _change(ops, lambda: ops.catalog.add("users", body.model_dump(), by=who.name, now_ns=ops.clock()))
    return UserOut(**ch.after)


@router.patch("/api/v1/billing/users/{user_id}", response_model=UserOut, responses=_BODY)
def patch_user(user_id: ItemId, body: UserPatch, ctx: Ctx, who: Admin) -> UserOut:
    """Change a user's name, default project or badges, from now on (audited)."""
    ops = services_of(ctx)
    ch = _change(ops, lambda: ops.catalog.patch("users", user_id, body.model_dump(exclude_unset=True),
                                                by=who.name, now_ns=ops.clock()))
    return UserOut(**ch.after)


# --- rate cards -------------------------------------------------------------------------------------------------
class RateCardOut(BaseModel):
    id: str = Field(description=_d(RateCard, "id"))
    valid_from: str | None = Field(description="since when this version of the card applies (UTC); null: as the "
                                   "site file has it, from the start")
    machines: list[str]
    kinds: list[str]
    per_running_hour: str = Field(description="exact decimals as text, in the site currency")
    per_reserved_hour: str | None
    minimum_charge: str
    increment_min: int
    setup_fee: str
    material: str | None
    per_kwh: str | None
    tiers: dict[str, dict[str, str | None]] = Field(description=_d(RateCard, "tiers"))


class TierPricesIn(_Body):
    per_running_hour: Decimal | None = None
    per_reserved_hour: Decimal | None = None
    minimum_charge: Decimal | None = None
    setup_fee: Decimal | None = None


class RateCardIn(_Body):
    id: str | None = Field(default=None, description="Stable id of the new card (default: rate-N, the first free "
                           "N).")
    valid_from: str | None = Field(default=None, description="ISO-8601 time the card applies from (default: now); "
                                   "not inside or before a closed month. Usage that starts from then on is priced "
                                   "with it.")
    machines: list[str] = Field(default_factory=list, description=_d(RateCard, "machines"))
    kinds: list[str] = Field(default_factory=list, description=_d(RateCard, "kinds"))
    per_running_hour: Decimal = Field(description=_d(RateCard, "per_running_hour"))
    per_reserved_hour: Decimal | None = Field(default=None, description=_d(RateCard, "per_reserved_hour"))
    minimum_charge: Decimal = Field(default=Decimal(0), description=_d(RateCard, "minimum_charge"))
    increment_min: int = Field(default=1, description=_d(RateCard, "increment_min"))
    setup_fee: Decimal = Field(default=Decimal(0), description=_d(RateCard, "setup_fee"))
    material: str | None = Field(default=None, description=_d(RateCard, "material"))
    per_kwh: Decimal | None = Field(default=None, description=_d(RateCard, "per_kwh"))
    tiers: dict[str, TierPricesIn] = Field(default_factory=dict, description=_d(RateCard, "tiers"))


class RatePatch(_Body):
    valid_from: str | None = Field(default=None, description="ISO-8601 time the change applies from (default: "
                                   "now); not inside or before a closed month. Usage that started earlier keeps "
                                   "the earlier prices.")
    machines: list[str] | None = Field(default=None, description=_d(RateCard, "machines"))
    kinds: list[str] | None = Field(default=None, description=_d(RateCard, "kinds"))
    per_running_hour: Decimal | None = Field(default=None, description=_d(RateCard, "per_running_hour"))
    per_reserved_hour: Decimal | None = Field(default=None, description=_d(RateCard, "per_reserved_hour"))
    minimum_charge: Decimal | None = Field(default=None, description=_d(RateCard, "minimum_charge"))
    increment_min: int | None = Field(default=None, description=_d(RateCard, "increment_min"))
    setup_fee: Decimal | None = Field(default=None, description=_d(RateCard, "setup_fee"))
    material: str | None = Field(default=None, description=_d(RateCard, "material"))
    per_kwh: Decimal | None = Field(default=None, description=_d(RateCard, "per_kwh"))
    tiers: dict[str, TierPricesIn] | None = Field(default=None, description=_d(RateCard, "tiers") + " The whole "
                                                  "mapping.")


def _rate_out(card: dict[str, Any], valid_from_ns: int | None) -> RateCardOut:
    return RateCardOut(valid_from=iso(valid_from_ns) if valid_from_ns else None, **card)


@router.get("/api/v1/rates", response_model=list[RateCardOut], responses={
    422: _error("`at` is not an ISO-8601 time")})
def rates(ctx: Ctx, who: Admin,
          at: Annotated[str | None, Query(description="ISO-8601 time: the cards in effect then (default: now)")]
          = None) -> list[RateCardOut]:
    """Rate cards in effect now (or at `at`), in the order they are matched: the site file's with the changes
    made through the API, each with the time its version applies from."""
    ops = services_of(ctx)
    when = ops.clock() if at is None else parse_time("at", at)
    _section(ops)
    b = ops.catalog.at(when)
    since = ops.catalog.since(when)
    return [_rate_out(c.model_dump(mode="json"), since.get(c.id or "")) for c in (b.rates if b else [])]


@router.post("/api/v1/rates", response_model=RateCardOut, status_code=status.HTTP_201_CREATED, responses=_RATE)
def add_rate(body: RateCardIn, ctx: Ctx, who: Admin) -> RateCardOut:
    """Add a rate card from `valid_from` (default now; audited). Cards added through the API come after the site
    file's: a card naming a machine still wins over one naming its kind, and among equals the first."""
    ops = services_of(ctx)
    valid = _valid_from(body.valid_from)
    item = body.model_dump(exclude={"valid_from"})
    ch = _change(ops, lambda: ops.catalog.add("rates", item, by=who.name, now_ns=ops.clock(), valid_from_ns=valid))
    return _rate_out(ch.after, ch.valid_from_ns)


@router.patch("/api/v1/rates/{ref}", response_model=RateCardOut, responses=_RATE)
def patch_rate(
    ref: Annotated[str, Path(min_length=1, max_length=200, description="the card's id, or its index in GET "
                             "/api/v1/rates counting from 0 (check-config's billing.rates[i])")],
    body: RatePatch, ctx: Ctx, who: Admin,
) -> RateCardOut:
    """Change prices or scope of a rate card from `valid_from` (default now; audited). Usage that started before
    keeps the earlier prices; a closed month never changes."""
    ops = services_of(ctx)
    valid = _valid_from(body.valid_from)
    fields = body.model_dump(exclude_unset=True, exclude={"valid_from"})
    ch = _change(ops, lambda: ops.catalog.patch("rates", ref, fields, by=who.name, now_ns=ops.clock(),
                                                valid_from_ns=valid))
    return _rate_out(ch.after, ch.valid_from_ns)


# --- audit ------------------------------------------------------------------------------------------------------
class ChangeOut(BaseModel):
    id: int
    at: str = Field(description="when the change was made (UTC)")
    by: str = Field(description="the name of the token that made it")
    list: str = Field(description="partners | projects | users | rates")
    item: str = Field(description="the id of the item changed")
    op: Literal["add", "patch"]
    valid_from: str | None = Field(description="since when the change applies (UTC); null: from the start")
    fields: dict[str, Any] = Field(description="what was given: the new item, or the fields changed")
    before: dict[str, Any] | None = Field(description="the item before (null for an added one)")
    after: dict[str, Any] = Field(description="the item after")


@router.get("/api/v1/billing/changes", response_model=list[ChangeOut])
def changes(
    ctx: Ctx, who: Admin,
    list_: Annotated[List | None, Query(alias="list", description="only changes of this list")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[ChangeOut]:
    """Every change made to partners, projects, users and rate cards through the API, oldest first: who, when,
    from when it applies, what was given, and the item before and after. Changes are never edited or deleted."""
    ops = services_of(ctx)
    _section(ops)
    return [ChangeOut(id=c.id, at=iso(c.recorded_ns) or "", by=c.by, list=c.list, item=c.item, op=c.op,
                      valid_from=iso(c.valid_from_ns) if c.valid_from_ns != ALWAYS else None, fields=c.fields,
                      before=c.before, after=c.after) for c in ops.catalog.changes(list_=list_, limit=limit)]
