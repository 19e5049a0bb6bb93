"""HTTP API of check-ins: who has a machine (reserved time, and the partner of its jobs), see
gateway/billing/checkins.py.

Technicians and admins check anyone in and out (a kiosk at the machine acts through a technician's or the kiosk's
own account); a partner's credential checks in only that partner's users and reads only its own check-ins.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from gateway.api.auth import Principal, any_principal, context_of
from gateway.api.context import ApiContext
from gateway.api.operations import Responses, _error, _known, services_of
from gateway.billing.checkins import AlreadyCheckedIn, CheckIn, CheckInError, NotCheckedIn
from gateway.state.model import iso

router = APIRouter(tags=["billing"], dependencies=[Depends(any_principal)],
                   responses={401: _error("missing or bad token"),
                              403: _error("the role may not do this, or the user belongs to another partner"),
                              422: _error("a parameter or the body is not valid; `detail` says which and why"),
                              503: _error("the usage ledger is not running on this gateway")})
Ctx = Annotated[ApiContext, Depends(context_of)]
Caller = Annotated[Principal, Depends(any_principal)]
MachineId = Annotated[str, Path(min_length=1, max_length=200, description="machine id")]
_MACHINE: Responses = {404: _error("no such machine, or it is not checked in")}


class CheckInIn(BaseModel):
    user: str | None = Field(default=None, max_length=200, description="user id (billing.users); their partner and "
                             "default project apply")
    partner: str | None = Field(default=None, max_length=200, description="admins: check in a partner directly "
                                "(no user)")
    project: str | None = Field(default=None, max_length=200, description="one of the partner's projects "
                                "(default: the user's)")


class CheckInOut(BaseModel):
    id: int
    machine: str
    user: str | None
    partner: str
    project: str | None
    start: str
    end: str | None = Field(description="none while checked in")
    via: str = Field(description="how it was opened: api or badge (a check-in closed at billing.checkin_max_h "
                     "keeps it; only its check_out event says via limit)")
    by: str
    closed_by: str | None = Field(description="who closed it; gateway when closed at billing.checkin_max_h; none "
                                  "while checked in")


def _out(ci: CheckIn) -> CheckInOut:
    return CheckInOut(id=ci.id, machine=ci.machine, user=ci.user, partner=ci.partner, project=ci.project,
                      start=iso(ci.start_ns), end=iso(ci.end_ns) if ci.end_ns is not None else None, via=ci.via,
                      by=ci.by, closed_by=ci.closed_by)


def _may_change(ctx: ApiContext, who: Principal, body: CheckInIn | None, current: CheckIn | None) -> None:
    if who.role in ("admin", "technician"):
        if body is not None and body.user is None and who.role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins check in a partner without a user")
        return
    if who.role != "partner" or who.partner is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role '{who.role}' may not check in or out")
    b = services_of(ctx).billing()
    if body is not None:
        owner = next((u.partner for u in b.users if u.id == body.user), None) if b and body.user else None
        if owner != who.partner:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a partner checks in only its own users")
    if current is not None and current.partner != who.partner:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the machine is checked in by another partner")


@router.post("/api/v1/machines/{machine}/checkin", response_model=CheckInOut, status_code=status.HTTP_201_CREATED,
             responses={**_MACHINE, 409: _error("the machine is checked in already"),
                        400: _error("unknown user, partner or project")})
def check_in(ctx: Ctx, who: Caller, machine: MachineId, body: CheckInIn) -> CheckInOut:
    """Check a user (or, for admins, a partner) in to a machine: its idle time is reserved time until check-out,
    and jobs it runs meanwhile are billed to the user's partner when no attribution rule names one."""
    _known(ctx, machine)
    _may_change(ctx, who, body, None)
    try:
        ci = services_of(ctx).usage.checkins.check_in(machine, by=who.name, user=body.user, partner=body.partner,
                                                      project=body.project)
    except AlreadyCheckedIn as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
    except CheckInError as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(err)) from None
    return _out(ci)


@router.post("/api/v1/machines/{machine}/checkout", response_model=CheckInOut, responses=_MACHINE)
def check_out(ctx: Ctx, who: Caller, machine: MachineId) -> CheckInOut:
    """End the machine's check-in; it becomes a ledger entry (reserved time, running time outside jobs)."""
    _known(ctx, machine)
    checkins = services_of(ctx).usage.checkins
    _may_change(ctx, who, None, checkins.open_on(machine))
    try:
        return _out(checkins.check_out(machine, by=who.name))
    except NotCheckedIn as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from None


@router.get("/api/v1/checkins", response_model=list[CheckInOut])
def list_checkins(
    ctx: Ctx, who: Caller,
    machine: Annotated[str | None, Query(max_length=200)] = None,
    open_only: Annotated[bool, Query(alias="open", description="only check-ins not ended yet")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[CheckInOut]:
    """Check-ins, newest first; a partner's credential lists only its own."""
    partner: str | None = None
    if who.role == "partner":
        if who.partner is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this partner token is not bound to a partner")
        partner = who.partner
    elif who.role not in ("admin", "technician"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role '{who.role}' may not read check-ins")
    rows: list[Any] = services_of(ctx).usage.checkins.list(machine=machine, partner=partner, open_only=open_only,
                                                           limit=limit)
    return [_out(ci) for ci in rows]
