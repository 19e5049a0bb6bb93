"""HTTP API of usage billing: ledger entries, monthly statements (CSV, HTML, PDF), assigning unattributed usage,
and closing months (partners, projects, users and rate cards: gateway/api/catalog.py).

Admins read everything. A token of role `partner` reads its own partner's usage and statements — the partner is
always the one of the credential: asking for another partner's is 403. Other roles get 403 (money is not their
business). Assigning usage and closing a month are for admins and are audited (a compensating pair of entries
naming who did it; the month with who closed it and when).
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.api.auth import Principal, any_principal, context_of, require_role
from gateway.api.context import ApiContext
from gateway.api.operations import ErrorOut, services_of
from gateway.billing.documents import MEDIA_TYPES, render, statement_of
from gateway.billing.ledger import LedgerEntry
from gateway.billing.periods import NS, month_span
from gateway.billing.persist import CloseRefused
from gateway.billing.service import AlreadyAttributed, NotAssignable, UnknownEntry
from gateway.billing.view import StatementError
from gateway.config.billing import BillingSection
from gateway.state.model import iso

Responses = dict[int | str, dict[str, Any]]
# YYYY-MM, 1970-01 to 2199-12 (times are stored as 64-bit nanoseconds, which end in 2262)
MONTH_PATTERN = r"^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])$"


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


router = APIRouter(tags=["billing"], dependencies=[Depends(any_principal)],
                   responses={401: _error("missing or bad token"),
                              403: _error("the token may not read this: another partner's data, or a role "
                                          "other than admin or partner"),
                              422: _error("a parameter or the body is not valid; `detail` says which and why"),
                              503: _error("the usage ledger is not running on this gateway, or the font of PDF "
                                          "statements is not installed")})
Ctx = Annotated[ApiContext, Depends(context_of)]
Caller = Annotated[Principal, Depends(any_principal)]
Admin = Annotated[Principal, Depends(require_role("admin"))]
Month = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM, a calendar month in the site's time zone")]
PartnerId = Annotated[str, Path(min_length=1, max_length=200, description="partner id (billing.partners)")]
_PARTNER: Responses = {404: _error("no such partner, or no billing section in the site file")}


def _billing(ctx: ApiContext) -> BillingSection:
    b = services_of(ctx).billing()
    if b is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "billing is not configured on this gateway (no billing "
                            "section in the site file)")
    return b


def _may_read(who: Principal, partner: str | None) -> str | None:
    """The partner whose data the caller may read: a partner token's own (asking for another is 403), or what
    an admin asked for (None: all)."""
    if who.role == "partner":
        if who.partner is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this partner token is not bound to a partner")
        if partner is not None and partner != who.partner:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a partner token reads only its own partner's usage and "
                                "statements")
        return who.partner
    if who.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role '{who.role}' may not read billing data; needs admin "
                            "or a partner token")
    return partner


def _known(b: BillingSection, partner: str) -> None:
    if partner not in {p.id for p in b.partners}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown partner '{partner}'; GET /api/v1/partners lists "
                            "them")


def entry_out(entry_id: int, e: LedgerEntry) -> dict[str, Any]:
    return {"id": entry_id, **e.as_dict(), "start": iso(e.start_ns), "end": iso(e.end_ns),
            "running_s": round(e.running_ns / NS, 3), "reserved_s": round(e.reserved_ns / NS, 3)}


class UsageOut(BaseModel):
    partner: str | None = Field(description="whose usage (none: every partner's, for admins)")
    month: str | None
    unattributed: bool
    entries: list[dict[str, Any]] = Field(description="ledger entries: id, key, machine, job, start, end, "
                                          "running_s, partner, project, source, sign (reversals are -1), note ...")


@router.get("/api/v1/usage", response_model=UsageOut, responses=_PARTNER)
def usage(
    ctx: Ctx,
    who: Caller,
    partner: Annotated[str | None, Query(max_length=200, description="partner id; a partner token may only "
                                         "name its own (default: its own; for admins: every partner)")] = None,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM: entries whose usage "
                                       "overlaps the month (site time zone)")] = None,
    unattributed: Annotated[bool, Query(description="admins: only usage no partner has (yet)")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> UsageOut:
    """Ledger entries, in the order they were recorded. Entries are never edited: a correction or an assignment
    shows as a reversal (sign -1) and a replacement."""
    ops = services_of(ctx)
    partner = _may_read(who, partner)
    if unattributed and who.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins list unattributed usage")
    if partner is not None:
        _known(_billing(ctx), partner)
    start_ns = end_ns = None
    if month is not None:
        start_ns, end_ns = month_span(month, zoneinfo.ZoneInfo(ops.cfg.site.timezone))
    if unattributed:
        keys = {e.key for e in ops.usage.unattributed()}
        rows = [(i, e) for i, e in ops.usage.ledger.with_ids(unattributed=True, start_ns=start_ns, end_ns=end_ns,
                                                             limit=limit) if e.key in keys]
    else:
        rows = ops.usage.ledger.with_ids(partner=partner, start_ns=start_ns, end_ns=end_ns, limit=limit)
    return UsageOut(partner=partner, month=month, unattributed=unattributed,
                    entries=[entry_out(i, e) for i, e in rows])


_DOCUMENT = {"content": {MEDIA_TYPES["csv"].split(";")[0]: {"schema": {"type": "string"}},
                         MEDIA_TYPES["html"].split(";")[0]: {"schema": {"type": "string"}},
                         MEDIA_TYPES["pdf"]: {"schema": {"type": "string", "format": "binary"}}},
             "description": "the statement: CSV for accounting import, a printable HTML page, or a PDF"}


@router.get("/api/v1/billing/statements/{partner}/{month}", response_class=Response,
            responses={200: _DOCUMENT, **_PARTNER})
def statement(
    partner: PartnerId,
    month: Month,
    ctx: Ctx,
    who: Caller,
    format: Annotated[Literal["csv", "html", "pdf"], Query(description="csv (default), html or pdf")] = "csv",
    lang: Annotated[Literal["ru", "kk", "en"], Query(description="language of HTML and PDF")] = "ru",
) -> Response:
    """A partner's statement for a calendar month: a line per job and day, subtotals per machine and project,
    contract discount, VAT and total. The CSV is byte-identical for the same ledger."""
    ops = services_of(ctx)
    _may_read(who, partner)
    b = _billing(ctx)
    _known(b, partner)
    try:
        st = statement_of(ops.cfg, ops.usage.ledger, partner, month, billing_at=ops.catalog.at)
        doc = render(st, format, lang, site_name=ops.cfg.site.name,
                     machine_names={m.id: m.name for m in ops.cfg.machines})
    except StatementError as err:  # the font of PDF statements is not installed
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err
    return Response(doc.content, media_type=doc.media_type,
                    headers={"Content-Disposition": f'inline; filename="{doc.filename}"'})


class AssignIn(BaseModel):
    partner: str = Field(min_length=1, max_length=200, description="partner id the usage is billed to")
    project: str | None = Field(default=None, max_length=200, description="one of the partner's projects")


class AssignOut(BaseModel):
    reversal: dict[str, Any]
    replacement: dict[str, Any]


@router.post("/api/v1/usage/{entry_id}/assign", response_model=AssignOut,
             responses={404: _error("no such ledger entry"),
                        409: _error("the entry has a partner already, or was assigned or corrected before"),
                        400: _error("the body is not UTF-8 text"),
                        413: _error("request body too large (api.max_body_bytes)")})
def assign(
    entry_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="ledger entry id (GET /api/v1/usage)")],
    body: AssignIn,
    ctx: Ctx,
    who: Admin,
) -> AssignOut:
    """Bill unattributed usage to a partner (and project). Audited: the ledger gets a reversal of the entry and
    a replacement with the partner, both naming who did it and when; nothing is edited."""
    ops = services_of(ctx)
    ops.billing()  # the partners and projects in effect now
    key = ops.usage.ledger.key_of(entry_id)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no ledger entry {entry_id}; GET /api/v1/usage?"
                            "unattributed=true lists the unattributed ones")
    try:
        rev, fixed = ops.usage.assign(key, partner=body.partner, project=body.project, by=who.name)
    except AlreadyAttributed as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    except NotAssignable as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from err
    except UnknownEntry as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from err
    ids = [ops.usage.ledger.id_of(e.key) or 0 for e in (rev, fixed)]
    return AssignOut(reversal=entry_out(ids[0], rev), replacement=entry_out(ids[1], fixed))


class MonthOut(BaseModel):
    month: str = Field(description="YYYY-MM, in the site's time zone")
    closed_at: str = Field(description="when the month was closed (UTC)")
    closed_by: str = Field(description="the name of the token that closed it")


def _month_out(month: str, closed_ns: int, by: str) -> MonthOut:
    return MonthOut(month=month, closed_at=iso(closed_ns) or "", closed_by=by)


@router.get("/api/v1/billing/months", response_model=list[MonthOut],
            responses={404: _error("no billing section in the site file")})
def closed_months(ctx: Ctx, who: Admin) -> list[MonthOut]:
    """Closed months, oldest first. A closed month's statement no longer changes: usage recorded after the close
    (a late job end, an assignment) is billed in the month it is recorded in."""
    _billing(ctx)
    return [_month_out(*m) for m in services_of(ctx).usage.ledger.closed_months()]


@router.post("/api/v1/billing/months/{month}/close", response_model=MonthOut,
             responses={404: _error("no billing section in the site file"),
                        409: _error("the month is not over yet in the site's time zone, or it is closed already")})
def close_month(month: Month, ctx: Ctx, who: Admin) -> MonthOut:
    """Close a month once it is over (in the site's time zone): its statements are final from then on. Audited:
    the month keeps who closed it and when; closing twice is refused."""
    _billing(ctx)
    ops = services_of(ctx)
    now = ops.usage.clock()
    try:
        ops.usage.ledger.close_over_month(month, now_ns=now, timezone=ops.cfg.site.timezone, by=who.name)
    except CloseRefused as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    return _month_out(month, now, who.name)
