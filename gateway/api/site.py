"""`GET /api/v1/site`: what the web page needs to show anything at all — the site's name and time zone (every time
on the page is shown in the site's zone, whatever the browser's), and who the caller is (the page offers billing
to admins and partners, and acting on alerts and maintenance to technicians and admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from gateway.api.auth import Principal, any_principal, context_of
from gateway.api.context import ApiContext, Role

router = APIRouter(tags=["gateway"], responses={401: {"description": "missing or bad token"}})


class CallerOut(BaseModel):
    name: str
    role: Role
    partner: str | None = Field(description="the partner of a partner token, else none")
    partner_name: str | None


class SiteOut(BaseModel):
    id: str
    name: str
    timezone: str = Field(description="IANA time zone of the site, e.g. Asia/Almaty (UTC when the operations "
                          "services are off)")
    caller: CallerOut


@router.get("/api/v1/site", response_model=SiteOut)
def site(ctx: Annotated[ApiContext, Depends(context_of)],
         who: Annotated[Principal, Depends(any_principal)]) -> SiteOut:
    """The site and the caller; open to every valid token, partners included."""
    cfg = ctx.services.cfg if ctx.services is not None else None
    partner_name = None
    if cfg is not None and cfg.billing is not None and who.partner is not None:
        partner_name = next((p.name for p in cfg.billing.partners if p.id == who.partner), None)
    return SiteOut(id=ctx.site_id, name=ctx.site_name, timezone=cfg.site.timezone if cfg is not None else "UTC",
                   caller=CallerOut(name=who.name, role=who.role, partner=who.partner, partner_name=partner_name))
