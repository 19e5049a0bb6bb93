"""HTTP API of accounts: logging in and out, who am I, the signed-in user's own password and tokens, users and their
tokens (admins), kiosk pairing, the audit log (admins); and the login and pairing pages.

Own credentials (`/api/v1/me/...`) belong to accounts with a password: a kiosk (no password, a paired screen) and a
site-file token (api.tokens, no account) get 403. Changing the password and making a token need the web app's
session (a cookie request, so with its CSRF token): an API token must not be able to take over its account, nor
breed tokens that outlive its own revocation. Listing and revoking own tokens also work with the account's own
API token (a script may retire itself).

`install(app, ctx)` gives an app its accounts (on the business store of `ctx.services`; none without it, and then
only site-file tokens work) and its failed-attempt limits, and includes the routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from gateway.accounts.limiter import FailureLimiter
from gateway.accounts.store import (
    DEFAULT_TOKEN_DAYS,
    MAX_TOKEN_DAYS,
    AccountError,
    AccountRole,
    Accounts,
    NewToken,
    Session,
    TokenInfo,
    UnknownUser,
    User,
    UserExists,
)
from gateway.api.auth import (
    SESSION_COOKIE,
    Principal,
    accounts_of,
    any_principal,
    client_address,
    foreign_origin,
    require_role,
)
from gateway.api.context import ApiContext
from gateway.reading import now_ns
from gateway.state.model import iso

STATIC_DIR = Path(__file__).parent / "static"
LOGIN_FAILURES_PER_USER = 5  # failed logins of one user name within LOGIN_WINDOW_S before it waits
LOGIN_FAILURES_PER_ADDRESS = 20  # failed logins from one client address within LOGIN_WINDOW_S
LOGIN_WINDOW_S = 15 * 60
PAIRING_FAILURES_PER_ADDRESS = 10  # wrong pairing codes from one address within PAIRING_WINDOW_S
PAIRING_WINDOW_S = 10 * 60
NS = 1_000_000_000
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class Limits:
    user: FailureLimiter
    address: FailureLimiter
    pairing: FailureLimiter


def install(app: FastAPI, ctx: ApiContext) -> None:
    services = ctx.services
    if services is None:
        app.state.accounts = None
        clock = now_ns
    else:
        billing = services.cfg.billing
        partners = frozenset(p.id for p in billing.partners) if billing is not None else frozenset[str]()
        clock = services.clock
        app.state.accounts = Accounts(services.store, clock=clock, partners=lambda: partners)
    app.state.limits = Limits(
        user=FailureLimiter(clock, max_failures=LOGIN_FAILURES_PER_USER, window_s=LOGIN_WINDOW_S),
        address=FailureLimiter(clock, max_failures=LOGIN_FAILURES_PER_ADDRESS, window_s=LOGIN_WINDOW_S),
        pairing=FailureLimiter(clock, max_failures=PAIRING_FAILURES_PER_ADDRESS, window_s=PAIRING_WINDOW_S))
    app.include_router(pages)
    app.include_router(public)
    app.include_router(signed_in)
    app.include_router(own)
    app.include_router(admin)


# --- shapes -----------------------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    detail: str


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PairIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, description="the code shown to the admin, e.g. K7QM-3XPA")


class SessionOut(BaseModel):
    name: str
    role: str
    partner: str | None
    csrf_token: str = Field(description="send it as X-CSRF-Token with every POST, PUT, PATCH and DELETE")
    expires: str


class MeOut(BaseModel):
    name: str
    role: str
    partner: str | None
    via: str = Field(description="site-token (api.tokens), token (an account's API token) or session (cookie)")
    csrf_token: str | None = Field(description="for a session: the X-CSRF-Token of unsafe requests")


class TokenOut(BaseModel):
    id: int
    label: str
    created: str
    expires: str
    revoked: str | None
    last_used: str | None = Field(description="the last day (UTC, YYYY-MM-DD) the token was used on; use is "
                                              "recorded once a day")


class UserOut(BaseModel):
    name: str
    role: str
    partner: str | None
    has_password: bool
    created: str
    revoked: str | None
    tokens: list[TokenOut]


class NewTokenOut(BaseModel):
    id: int
    token: str = Field(description="shown this once: only its digest is stored")
    expires: str


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="login name: letters, digits and . _ @ -")
    role: AccountRole
    partner: str | None = Field(default=None, description="with role partner: its partner (billing.partners)")
    password: str | None = Field(default=None, max_length=1024,
                                 description="at least 10 characters; none: the user signs in with tokens only")
    token_label: str | None = Field(default="", max_length=200,
                                    description="a token is made with the user unless this is null")
    token_days: int = Field(default=DEFAULT_TOKEN_DAYS, ge=1, le=MAX_TOKEN_DAYS)


class NewUserOut(BaseModel):
    user: UserOut
    token: NewTokenOut | None


class RoleIn(BaseModel):
    role: AccountRole
    partner: str | None = None


class TokenIn(BaseModel):
    label: str = Field(default="", max_length=200)
    days: int = Field(default=DEFAULT_TOKEN_DAYS, ge=1, le=MAX_TOKEN_DAYS)


class PasswordIn(BaseModel):
    current: str = Field(min_length=1, max_length=1024, description="the password signed in with")
    new: str = Field(min_length=1, max_length=1024, description="at least 10 characters")


class KioskIn(BaseModel):
    name: str = Field(default="kiosk", min_length=1, max_length=64,
                      description="the kiosk user the screen signs in as (made with role kiosk if new)")


class PairingOut(BaseModel):
    kiosk: str
    code: str = Field(description="8 characters, single use; type it on the wall screen at /pair")
    link: str = Field(description="or open this on the wall screen (the code is in the fragment: never sent "
                                  "to a server log)")
    expires: str


class AuditOut(BaseModel):
    id: int
    ts: str
    actor: str
    action: str
    target: str | None
    address: str | None
    detail: dict[str, Any]


# --- helpers ----------------------------------------------------------------------------------------------
def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


def _accounts(request: Request) -> Accounts:
    accounts = accounts_of(request)
    if accounts is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "accounts are not available: the business store "
                            "is not running on this gateway (site-file tokens still work)")
    return accounts


def _limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


def _too_many(wait_s: int) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, f"too many failed attempts: try again in {wait_s} s",
                         headers={"Retry-After": str(wait_s)})


def _ts(ns: int | None) -> str | None:
    return None if ns is None else iso(ns)


def _token_out(t: TokenInfo) -> TokenOut:
    used = None if t.used_day is None else date.fromordinal(EPOCH_ORDINAL + t.used_day).isoformat()
    return TokenOut(id=t.id, label=t.label, created=iso(t.created_ns) or "", expires=iso(t.expires_ns) or "",
                    revoked=_ts(t.revoked_ns), last_used=used)


def _new_token_out(token: NewToken) -> NewTokenOut:
    return NewTokenOut(id=token.id, token=token.secret, expires=iso(token.expires_ns) or "")


def _user_out(u: User, tokens: list[TokenInfo]) -> UserOut:
    return UserOut(name=u.name, role=u.role, partner=u.partner, has_password=u.has_password,
                   created=iso(u.created_ns) or "", revoked=_ts(u.revoked_ns),
                   tokens=[_token_out(t) for t in tokens if t.user == u.name])


def _session_cookie(request: Request, response: Response, session: Session, now: int) -> SessionOut:
    response.set_cookie(SESSION_COOKIE, session.secret, max_age=(session.expires_ns - now) // NS, path="/",
                        secure=request.url.scheme == "https", httponly=True, samesite="strict")
    response.headers["Cache-Control"] = "no-store"
    a = session.account
    return SessionOut(name=a.name, role=a.role, partner=a.partner, csrf_token=session.csrf,
                      expires=iso(session.expires_ns) or "")


def _from_browser_elsewhere(request: Request) -> None:
    if foreign_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a request from another origin is refused")


def _account_errors(err: AccountError) -> HTTPException:
    if isinstance(err, UnknownUser):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(err))
    if isinstance(err, UserExists):
        return HTTPException(status.HTTP_409_CONFLICT, str(err))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))


# --- pages ------------------------------------------------------------------------------------------------
pages = APIRouter(include_in_schema=False)


@pages.get("/login")
@pages.get("/pair")
def login_page() -> FileResponse:
    """The login page; at /pair the same page pairs a wall screen with a code (typed, or in the link's #code)."""
    return FileResponse(STATIC_DIR / "login.html", headers={"Cache-Control": "no-cache"})


# --- logging in -------------------------------------------------------------------------------------------
public = APIRouter(tags=["accounts"], responses={
    400: _error("the body is not JSON"),
    403: _error("a browser request from another origin"), 422: _error("the body is not valid"),
    429: _error("too many failed attempts from this user name or address; Retry-After says when to try again"),
    503: _error("accounts are not available (no business store)")})
Name = Annotated[str, PathParam(min_length=1, max_length=64, description="user name")]


@public.post("/api/v1/login", response_model=SessionOut, responses={401: _error("wrong user name or password")})
def login(body: LoginIn, request: Request, response: Response) -> SessionOut:
    """Sign in with a user name and password: sets the session cookie (HttpOnly, SameSite=Strict, Secure over
    TLS) and answers the session's CSRF token. Failed logins are limited per user name and per client address."""
    accounts = _accounts(request)
    _from_browser_elsewhere(request)
    limits, address, key = _limits(request), client_address(request), body.name.lower()
    wait = max(limits.user.retry_after_s(key) or 0, limits.address.retry_after_s(address) or 0)
    if wait:
        raise _too_many(wait)
    account = accounts.check_login(body.name, body.password)
    if account is None:
        limits.user.failed(key)
        limits.address.failed(address)
        accounts.audit(body.name, "login_failed", body.name, address=address)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    limits.user.reset(key)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        accounts.end_session(old, address=address)
    return _session_cookie(request, response, accounts.open_session(account, address=address), accounts.clock())


@public.post("/api/v1/kiosks/session", response_model=SessionOut,
             responses={401: _error("unknown, used or expired pairing code")})
def pair_kiosk(body: PairIn, request: Request, response: Response) -> SessionOut:
    """A wall screen exchanges a pairing code for a long-lived kiosk session cookie."""
    accounts = _accounts(request)
    _from_browser_elsewhere(request)
    limits, address = _limits(request), client_address(request)
    wait = limits.pairing.retry_after_s(address)
    if wait:
        raise _too_many(wait)
    session = accounts.pair(body.code, address=address)
    if session is None:
        limits.pairing.failed(address)
        accounts.audit("-", "pairing_failed", None, address=address)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown, used or expired pairing code; ask an admin "
                            "for a new one")
    return _session_cookie(request, response, session, accounts.clock())


# --- signed in --------------------------------------------------------------------------------------------
signed_in = APIRouter(tags=["accounts"], dependencies=[Depends(any_principal)],
                      responses={401: _error("missing or bad credentials"),
                                 403: _error("a cookie-authenticated request without its CSRF token")})
Caller = Annotated[Principal, Depends(any_principal)]


@signed_in.get("/api/v1/me", response_model=MeOut)
def me(who: Caller) -> MeOut:
    """Who the credentials belong to; with a session, its CSRF token (send it as X-CSRF-Token)."""
    return MeOut(name=who.name, role=who.role, partner=who.partner, via=who.via, csrf_token=who.csrf)


@signed_in.post("/api/v1/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def logout(request: Request, who: Caller) -> Response:
    """End the session of the cookie and clear the cookie (with a bearer token: nothing to end)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    accounts = accounts_of(request)
    if who.via == "session" and cookie and accounts is not None:
        accounts.end_session(cookie, address=client_address(request))
    response = Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Cache-Control": "no-store"})
    response.delete_cookie(SESSION_COOKIE, path="/", secure=request.url.scheme == "https", httponly=True,
                           samesite="strict")
    return response


# --- the signed-in user's own password and tokens ---------------------------------------------------------
def own_account(who: Caller) -> Principal:
    """The caller when it is an account that may manage its own credentials (see the module text)."""
    if who.via == "site-token":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a site-file token (api.tokens) has no account: its "
                            "password and tokens are the site file's")
    if who.role == "kiosk":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a kiosk has no password or tokens of its own; an admin "
                            "pairs it again (POST /api/v1/kiosks/pair) or revokes it")
    return who


def own_session(who: Annotated[Principal, Depends(own_account)]) -> Principal:
    """The caller when, besides, it came with the web app's session (not an API token)."""
    if who.via != "session":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the web app's session (sign in at /login): an "
                            "API token cannot change its account's password or make tokens")
    return who


own = APIRouter(tags=["accounts"], responses={
    400: _error("the body is not JSON"), 401: _error("missing or bad credentials"),
    403: _error("a kiosk or a site-file token (no credentials of its own), an API token where the session is "
                "needed, or a cookie-authenticated request without its CSRF token"),
    422: _error("a parameter or the body is not valid; `detail` says which and why"),
    503: _error("accounts are not available (no business store)")})
Owner = Annotated[Principal, Depends(own_account)]
SessionOwner = Annotated[Principal, Depends(own_session)]


@own.post("/api/v1/me/password", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
          responses={400: _error("the body is not JSON, or the current password is wrong"),
                     429: _error("too many failed attempts (wrong passwords here and failed logins count "
                                 "together); Retry-After says when to try again")})
def change_password(body: PasswordIn, request: Request, who: SessionOwner) -> Response:
    """Change one's own password (with the session only): the current password is checked (a wrong one counts
    as a failed login, limited the same way), the new one follows the same rules as any password; every other
    session of the user ends, this one stays. API tokens stay. Audited."""
    accounts, limits, address, key = _accounts(request), _limits(request), client_address(request), who.name.lower()
    wait = max(limits.user.retry_after_s(key) or 0, limits.address.retry_after_s(address) or 0)
    if wait:
        raise _too_many(wait)
    if accounts.check_login(who.name, body.current) is None:
        limits.user.failed(key)
        limits.address.failed(address)
        accounts.audit(who.name, "password_change_failed", who.name, address=address)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the current password is wrong")
    limits.user.reset(key)
    try:
        accounts.set_password(who.name, body.new, by=who.name, address=address,
                              keep_session=request.cookies.get(SESSION_COOKIE))
    except AccountError as err:
        raise _account_errors(err) from err
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Cache-Control": "no-store"})


@own.get("/api/v1/me/tokens", response_model=list[TokenOut])
def own_tokens(request: Request, who: Owner) -> list[TokenOut]:
    """One's own API tokens, revoked and expired ones included (never their secrets)."""
    return [_token_out(t) for t in _accounts(request).tokens(who.name)]


@own.post("/api/v1/me/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED)
def add_own_token(body: TokenIn, request: Request, who: SessionOwner) -> NewTokenOut:
    """A new API token of one's own (with the session only), shown this once; it has the account's role."""
    try:
        token = _accounts(request).issue_token(who.name, label=body.label, days=body.days, by=who.name,
                                               address=client_address(request))
    except AccountError as err:
        raise _account_errors(err) from err
    return _new_token_out(token)


@own.delete("/api/v1/me/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
            responses={404: _error("no such token of yours")})
def revoke_own_token(token_id: Annotated[int, PathParam(ge=1, le=2**63 - 1, description="token id")],
                     request: Request, who: Owner) -> Response:
    """Revoke one of one's own API tokens (another user's token id answers 404, as an unknown one)."""
    try:
        _accounts(request).revoke_token(who.name, token_id, by=who.name, address=client_address(request))
    except UnknownUser as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"you have no token {token_id}") from err
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- admins -----------------------------------------------------------------------------------------------
admin = APIRouter(tags=["accounts"], dependencies=[Depends(require_role("admin"))],
                  responses={400: _error("the body is not JSON"), 401: _error("missing or bad credentials"),
                             403: _error("not an admin, or a cookie-authenticated request without its CSRF token"),
                             422: _error("a parameter or the body is not valid; `detail` says which and why"),
                             503: _error("accounts are not available (no business store)")})
Admin = Annotated[Principal, Depends(require_role("admin"))]
_USER: dict[int | str, dict[str, Any]] = {404: _error("unknown user")}


@admin.get("/api/v1/users", response_model=list[UserOut])
def users(request: Request) -> list[UserOut]:
    """Every account with its tokens (never their secrets), revoked ones included."""
    accounts = _accounts(request)
    tokens = accounts.tokens()
    return [_user_out(u, tokens) for u in accounts.users()]


@admin.post("/api/v1/users", response_model=NewUserOut, status_code=status.HTTP_201_CREATED,
            responses={409: _error("the user exists already")})
def add_user(body: UserIn, request: Request, who: Admin) -> NewUserOut:
    """Make an account and (unless `token_label` is null) an API token for it, shown this once."""
    accounts, address = _accounts(request), client_address(request)
    try:
        user = accounts.add_user(body.name, body.role, partner=body.partner, password=body.password, by=who.name,
                                 address=address)
        token = None if body.token_label is None else accounts.issue_token(
            user.name, label=body.token_label, days=body.token_days, by=who.name, address=address)
    except AccountError as err:
        raise _account_errors(err) from err
    return NewUserOut(user=_user_out(user, accounts.tokens(user.name)),
                      token=None if token is None else _new_token_out(token))


@admin.put("/api/v1/users/{name}/role", response_model=UserOut, responses=_USER)
def set_role(name: Name, body: RoleIn, request: Request, who: Admin) -> UserOut:
    """Change a user's role (and partner); the user's browser sessions end. Audited."""
    accounts = _accounts(request)
    try:
        user = accounts.set_role(name, body.role, partner=body.partner, by=who.name, address=client_address(request))
    except AccountError as err:
        raise _account_errors(err) from err
    return _user_out(user, accounts.tokens(name))


@admin.delete("/api/v1/users/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
              responses=_USER)
def revoke_user(name: Name, request: Request, who: Admin) -> Response:
    """Revoke a user: every token and session of it stops working at once. The name stays taken."""
    try:
        _accounts(request).revoke_user(name, by=who.name, address=client_address(request))
    except AccountError as err:
        raise _account_errors(err) from err
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin.post("/api/v1/users/{name}/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED,
            responses=_USER)
def add_token(name: Name, body: TokenIn, request: Request, who: Admin) -> NewTokenOut:
    """A new API token for a user, shown this once."""
    try:
        token = _accounts(request).issue_token(name, label=body.label, days=body.days, by=who.name,
                                               address=client_address(request))
    except AccountError as err:
        raise _account_errors(err) from err
    return _new_token_out(token)


@admin.delete("/api/v1/users/{name}/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT,
              response_class=Response, responses={404: _error("unknown user or token")})
def revoke_token(name: Name, token_id: Annotated[int, PathParam(ge=1, le=2**63 - 1, description="token id")],
                 request: Request, who: Admin) -> Response:
    """Revoke one API token of a user."""
    try:
        _accounts(request).revoke_token(name, token_id, by=who.name, address=client_address(request))
    except AccountError as err:
        raise _account_errors(err) from err
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin.post("/api/v1/kiosks/pair", response_model=PairingOut, status_code=status.HTTP_201_CREATED)
def pairing_code(request: Request, who: Admin, body: KioskIn | None = None) -> PairingOut:
    """A pairing code for a wall screen: valid ten minutes, single use. The screen opens /pair and types it (or
    opens `link`) and stays signed in as the kiosk user (read-only board, no billing) until that user is
    revoked."""
    name = (body or KioskIn()).name
    try:
        code, expires = _accounts(request).pairing_code(name, by=who.name, address=client_address(request))
    except AccountError as err:
        raise _account_errors(err) from err
    return PairingOut(kiosk=name, code=f"{code[:4]}-{code[4:]}", link=f"/pair#{code}", expires=iso(expires) or "")


@admin.get("/api/v1/audit", response_model=list[AuditOut])
def audit(request: Request,
          action: Annotated[str | None, Query(max_length=64, description="only this action, e.g. login_failed")]
          = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[AuditOut]:
    """The audit log, newest first: logins (and failed ones), logouts, the first use of a token each day, users
    added, revoked and changed, tokens issued and revoked, kiosks paired."""
    return [AuditOut(id=e["id"], ts=iso(e["ts_ns"]) or "", actor=e["actor"], action=e["action"],
                     target=e["target"], address=e["address"], detail=e["detail"])
            for e in _accounts(request).audit_log(limit=limit, action=action)]
