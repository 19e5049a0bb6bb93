"""HTTP API of the operations services: alerts (list, ack, shelve), events, maintenance (status, done, log), maintenance
mode of a machine, and OEE. Reading needs any valid token; changing needs a technician or an admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts.book import OPEN_STATES, AlertClosed, AlertNotFound
from gateway.api.auth import Principal, context_of, current_principal, require_role
from gateway.api.context import ApiContext
from gateway.api.times import parse_time
from gateway.maintenance.service import UnknownTask
from gateway.services import Services

NS = 1_000_000_000

class ErrorOut(BaseModel):
    detail: str


Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


router = APIRouter(dependencies=[Depends(current_principal)],
                   responses={401: _error("missing or bad token"),
                              422: _error("a parameter or the body is not valid; `detail` says which and why"),
                              403: _error("the token's role may not do this (a partner token reads only its "
                                          "usage and statements)"),
                              503: _error("alerts and maintenance are not running on this gateway")})
_FORBIDDEN: Responses = {403: _error("the token's role may not change this (technician or admin needed)")}
_BODY: Responses = {400: _error("the body is not UTF-8 text"),
                    413: _error("request body too large (api.max_body_bytes)")}
_ALERT: Responses = {404: _error("no such alert")}
_CLOSED: Responses = {409: _error("the alert is closed")}
_MACHINE: Responses = {404: _error("unknown machine")}
_TIMES: Responses = {422: _error("a time is not ISO-8601, out of range, or 'from' is not before 'to'")}
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="alert id")]
Ctx = Annotated[ApiContext, Depends(context_of)]
Technician = Annotated[Principal, Depends(require_role("technician", "admin"))]
AlertState = Literal["open", "all", "closed", "active_unacknowledged", "acknowledged", "cleared_unacknowledged",
                     "shelved", "suppressed"]


def services_of(ctx: ApiContext) -> Services:
    if ctx.services is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "alerts and maintenance are not running here")
    return ctx.services


def _known(ctx: ApiContext, machine: str) -> None:
    if not ctx.machines.has(machine):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"unknown machine '{machine}'; GET /api/v1/machines lists the known ones")


def _window(ops: Services, start: str | None, end: str | None, default: timedelta) -> tuple[int, int]:
    end_ns = parse_time("to", end) if end else ops.clock() + 1  # "now" includes what happened this instant
    start_ns = parse_time("from", start) if start else end_ns - int(default.total_seconds() * NS)
    if start_ns >= end_ns:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'from' must be before 'to'")
    return start_ns, end_ns


# --- alerts -----------------------------------------------------------------------------------------------------
class AckIn(BaseModel):
    note: str = Field(default="", max_length=2000, description="What was done or found.")


class ShelveIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    duration_min: float = Field(gt=0, le=7 * 24 * 60, description="Shelve for this many minutes (at most 7 days); "
                                "the alert comes back by itself afterwards.")
    note: str = Field(default="", max_length=2000, description="Why it is shelved.")


def _alert_call(fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn(*args, **kw)
    except AlertNotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from err
    except AlertClosed as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    return result


@router.get("/api/v1/alerts", tags=["alerts"])
def list_alerts(
    ctx: Ctx,
    state: Annotated[AlertState, Query(description="open (default): every alert not closed; all; closed; or one "
                                       "state: " + ", ".join(OPEN_STATES))] = "open",
    machine: Annotated[str | None, Query(description="only this machine")] = None,
    severity: Annotated[Literal["critical", "high", "medium", "low"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict[str, Any]]:
    """Alerts, most severe and newest first. Each has its ISA-18.2 `state`, `count` of occurrences and messages
    in English and Russian."""
    return services_of(ctx).book.find(state=state, machine=machine, severity=severity, limit=limit)


@router.get("/api/v1/alerts/{alert_id}", tags=["alerts"], responses=_ALERT)
def get_alert(alert_id: AlertId, ctx: Ctx) -> dict[str, Any]:
    return _alert_call(services_of(ctx).book.get, alert_id)


@router.post("/api/v1/alerts/{alert_id}/ack", tags=["alerts"], responses={**_ALERT, **_CLOSED, **_FORBIDDEN, **_BODY})
def ack_alert(alert_id: AlertId, ctx: Ctx, who: Technician, body: AckIn | None = None) -> dict[str, Any]:
    """Acknowledge: an alert whose condition is gone closes; an active one stays as `acknowledged`."""
    ops = services_of(ctx)
    return _alert_call(ops.book.ack, alert_id, by=who.name, note=(body or AckIn()).note, now_ns=ops.clock())


@router.post("/api/v1/alerts/{alert_id}/shelve", tags=["alerts"],
             responses={**_ALERT, **_CLOSED, **_FORBIDDEN, **_BODY})
def shelve_alert(alert_id: AlertId, body: ShelveIn, ctx: Ctx, who: Technician) -> dict[str, Any]:
    """Shelve for a while: no notifications, hidden from the active list, back by itself when the time is up."""
    ops = services_of(ctx)
    return _alert_call(ops.book.shelve, alert_id, by=who.name, duration_s=body.duration_min * 60, note=body.note,
                       now_ns=ops.clock())


@router.post("/api/v1/alerts/{alert_id}/unshelve", tags=["alerts"], responses={**_ALERT, **_CLOSED, **_FORBIDDEN})
def unshelve_alert(alert_id: AlertId, ctx: Ctx, who: Technician) -> dict[str, Any]:
    ops = services_of(ctx)
    return _alert_call(ops.book.unshelve, alert_id, now_ns=ops.clock(), by=who.name)


# --- events -----------------------------------------------------------------------------------------------------
@router.get("/api/v1/events", tags=["events"], responses={**_MACHINE, **_TIMES})
def list_events(
    ctx: Ctx,
    machine: Annotated[str | None, Query()] = None,
    type: Annotated[Literal["state", "job_start", "job_end", "maintenance_mode", "maintenance_done", "alert"] | None,
                    Query(description="event type")] = None,
    start: Annotated[str | None, Query(alias="from", description="ISO-8601; default to - 24 h")] = None,
    end: Annotated[str | None, Query(alias="to", description="ISO-8601; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict[str, Any]]:
    """State changes, jobs, maintenance and alert transitions, newest first."""
    ops = services_of(ctx)
    if machine:
        _known(ctx, machine)
    start_ns, end_ns = _window(ops, start, end, timedelta(hours=24))
    return ops.events(machine=machine, type_=type, start_ns=start_ns, end_ns=end_ns, limit=limit)


# --- maintenance ------------------------------------------------------------------------------------------------
class DoneIn(BaseModel):
    note: str = Field(default="", max_length=2000, description="What was done (parts replaced, findings).")


class ModeIn(BaseModel):
    active: bool = Field(description="true: the machine is in maintenance (its alerts are suppressed).")
    note: str = Field(default="", max_length=2000)


@router.get("/api/v1/maintenance", tags=["maintenance"], responses=_MACHINE)
def maintenance(
    ctx: Ctx,
    machine: Annotated[str | None, Query()] = None,
    status_: Annotated[Literal["ok", "due_soon", "due"] | None, Query(alias="status")] = None,
) -> list[dict[str, Any]]:
    """Every maintenance task with its status (ok | due_soon | due), the use of each limit and when it was last
    done; due first."""
    ops = services_of(ctx)
    if machine:
        _known(ctx, machine)
    tasks = ops.maintenance.tasks(ops.clock(), machine)
    return [t for t in tasks if status_ is None or t["status"] == status_]


@router.get("/api/v1/maintenance/log", tags=["maintenance"])
def maintenance_log(ctx: Ctx, machine: Annotated[str | None, Query()] = None,
                    task: Annotated[str | None, Query()] = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[dict[str, Any]]:
    """Audit log of maintenance done: who, when, note and the use at that time."""
    return services_of(ctx).maintenance.history(machine, task, limit)


@router.post("/api/v1/maintenance/{machine}/{task}/done", tags=["maintenance"],
             responses={404: _error("unknown machine or task"), **_FORBIDDEN, **_BODY})
def maintenance_done(machine: str, task: str, ctx: Ctx, who: Technician, body: DoneIn | None = None) -> dict[str, Any]:
    """Mark a task done now (logged with who and the note); its counters start again from zero."""
    ops = services_of(ctx)
    _known(ctx, machine)
    try:
        return ops.maintenance.done(machine, task, by=who.name, note=(body or DoneIn()).note, now_ns=ops.clock())
    except UnknownTask as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from err


@router.put("/api/v1/machines/{machine}/maintenance-mode", tags=["maintenance"],
            responses={**_MACHINE, **_FORBIDDEN, **_BODY})
def maintenance_mode(machine: str, body: ModeIn, ctx: Ctx, who: Technician) -> dict[str, Any]:
    """Take a machine into maintenance (state `maintenance`, alerts suppressed) or back."""
    services_of(ctx)
    _known(ctx, machine)
    return ctx.machines.set_maintenance(machine, body.active, by=who.name, note=body.note)


# --- OEE --------------------------------------------------------------------------------------------------------
@router.get("/api/v1/oee", tags=["oee"], responses={**_MACHINE, **_TIMES})
def oee(
    ctx: Ctx,
    machine: Annotated[str | None, Query(description="one machine; default every machine")] = None,
    start: Annotated[str | None, Query(alias="from", description="ISO-8601; default to - 24 h")] = None,
    end: Annotated[str | None, Query(alias="to", description="ISO-8601; default now")] = None,
) -> dict[str, Any]:
    """OEE = availability x performance x quality per machine, per shift and per day (see docs/operations.md)."""
    ops = services_of(ctx)
    if machine:
        _known(ctx, machine)
    start_ns, end_ns = _window(ops, start, end, timedelta(hours=24))
    if end_ns - start_ns > 93 * 86_400 * NS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "at most 93 days at once")
    ids = [machine] if machine else ctx.machines.ids()
    return {"from": _iso(start_ns), "to": _iso(end_ns), "timezone": ops.cfg.site.timezone,
            "machines": [ops.oee(mid, start_ns, end_ns) for mid in ids]}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
