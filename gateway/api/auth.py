"""Who makes a request, and what they may do: bearer tokens, session cookies, CSRF and role checks for the HTTP
API, the web pages and the live WebSocket.

Credentials, in this order:
1. `Authorization: Bearer <token>`: a site-file token (`ApiContext.tokens`, from api.tokens; compared in constant
   time with every one) or an account's API token (gateway/accounts, looked up by its digest). A request with this
   header is judged by it alone and is never subject to CSRF checks (a browser does not add it by itself).
2. The session cookie `kartech_session` (set by POST /api/v1/login or by kiosk pairing): a server-side session of
   an account. An unsafe request (anything but GET, HEAD, OPTIONS) authenticated by it must carry the session's
   CSRF token in `X-CSRF-Token` (GET /api/v1/me and the login answer give it), and its `Origin`, when present,
   must be the gateway's own.

Roles: `admin` everything; `technician` operations (alerts, maintenance); `viewer` (site-file tokens) and `kiosk`
(accounts) read the board and nothing else; `partner` reads only its own partner's usage and statements (the
billing routes, which use `any_principal`; the partner comes from the credential, never from the request) and
its own account (`/api/v1/me`); every other route answers it 403 (`current_principal`).

Pages use `page_principal(request)`: the signed-in user of a browser request, or None (then `login_redirect`).
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from gateway.accounts.store import Accounts
from gateway.api.context import ApiContext, Role

log = logging.getLogger(__name__)

SESSION_COOKIE = "kartech_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PRINCIPAL_KEY = "kartech.principal"  # the ASGI scope key under which the Guard leaves who it let in

# auto_error=False: we answer 401 with `WWW-Authenticate: Bearer` ourselves; the schemes still document the
# "Authorize" button in /docs
bearer_scheme = HTTPBearer(auto_error=False, description="A gateway token: `Authorization: Bearer <token>`")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                             description="The web app's session (POST /api/v1/login); unsafe requests also need "
                                         "the X-CSRF-Token header")

Via = Literal["site-token", "token", "session"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request."""

    name: str
    role: Role
    partner: str | None = None  # the partner of a partner credential (from the credential, never asked)
    via: Via = "site-token"
    csrf: str | None = field(default=None, repr=False, compare=False)  # the session's CSRF token


def context_of(conn: HTTPConnection) -> ApiContext:
    ctx: ApiContext = conn.app.state.ctx
    return ctx


def accounts_of(conn: HTTPConnection) -> Accounts | None:
    """The accounts of the app (None: no business store, so site-file tokens only)."""
    accounts: Accounts | None = getattr(conn.app.state, "accounts", None)
    return accounts


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client is not None else "unknown"


def find_principal(tokens: Mapping[str, tuple[str, Role]], presented: str | None) -> Principal | None:
    """The owner of a site-file token, comparing against every token in constant time (no early exit)."""
    if not presented:
        return None
    given = presented.encode()
    found: Principal | None = None
    for token, (name, role) in tokens.items():
        if hmac.compare_digest(token.encode(), given):
            found = Principal(name, role)
    return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def token_principal(ctx: ApiContext, accounts: Accounts | None, token: str | None,
                    address: str) -> Principal | None:
    """The owner of a site-file token or of an account's API token, or None."""
    site = find_principal(ctx.tokens, token)
    if site is not None:
        return Principal(site.name, site.role, ctx.partners.get(token or "")) if site.role == "partner" else site
    if accounts is None or not token:
        return None
    account = accounts.by_token(token, address=address)
    return None if account is None else Principal(account.name, account.role, account.partner, "token")


def identify(ctx: ApiContext, accounts: Accounts | None, conn: HTTPConnection) -> Principal | None:
    """The principal of a request or WebSocket by its credentials (see the module text), or None."""
    try:
        authorization = conn.headers.get("authorization")
        if authorization is not None:  # the header decides alone: no falling back to a cookie
            token = bearer_token(authorization)
            if token is None:
                return None
            return token_principal(ctx, accounts, token, client_address(conn))
        cookie = conn.cookies.get(SESSION_COOKIE)
        if cookie and accounts is not None:
            session = accounts.by_session(cookie)
            if session is not None:
                a = session.account
                return Principal(a.name, a.role, a.partner, "session", session.csrf)
    except sqlite3.Error:
        log.error("accounts: the business store failed while checking a credential", exc_info=True)
    return None


def own_origin(conn: HTTPConnection) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    return f"{scheme}://{conn.headers.get('host', '')}"


def foreign_origin(conn: HTTPConnection) -> bool:
    """Whether the request says it comes from a page of another origin (no Origin header: not a browser's)."""
    origin = conn.headers.get("origin")
    return origin is not None and origin != own_origin(conn)


def csrf_problem(conn: HTTPConnection, principal: Principal, method: str) -> str | None:
    """Why a cookie-authenticated unsafe request is refused, or None (bearer requests are never refused here)."""
    if principal.via != "session" or method.upper() in SAFE_METHODS:
        return None
    if foreign_origin(conn):
        return "a request from another origin is refused"
    sent = conn.headers.get(CSRF_HEADER, "")
    if not principal.csrf or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        return f"missing or wrong CSRF token: send the {CSRF_HEADER} header given by GET /api/v1/me"
    return None


def missing_detail(conn: HTTPConnection) -> str:
    if conn.headers.get("authorization") is not None:
        return "invalid token"
    if conn.cookies.get(SESSION_COOKIE):
        return "the session has ended or expired: log in again at /login"
    return "missing bearer token: send 'Authorization: Bearer <token>' (or log in at /login)"


def principal_of(conn: HTTPConnection) -> Principal | None:
    """Who the Guard let in, or (on the open paths, which it does not check) who the credentials say."""
    if PRINCIPAL_KEY in conn.scope:
        cached: Principal = conn.scope[PRINCIPAL_KEY]
        return cached
    principal = identify(context_of(conn), accounts_of(conn), conn)
    if principal is not None:
        conn.scope[PRINCIPAL_KEY] = principal
    return principal


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def any_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal:
    """FastAPI dependency: the caller, partners included; 401 without valid credentials, 403 for a
    cookie-authenticated unsafe request without the CSRF token."""
    principal = principal_of(request)
    if principal is None:
        raise _unauthorized(missing_detail(request))
    problem = csrf_problem(request, principal, request.method)
    if problem is not None:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=problem)
    return principal


def current_principal(principal: Annotated[Principal, Depends(any_principal)]) -> Principal:
    """FastAPI dependency: the caller, 401 without valid credentials, 403 for a partner (it reads only its
    usage and statements)."""
    if principal.role == "partner":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail="a partner token reads only its own usage and statements (/api/v1/usage, "
                                   "/api/v1/billing/statements/...)")
    return principal


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    """FastAPI dependency factory: the caller, 401 without valid credentials, 403 when the role is not in `roles`.

    Example: `@router.post("/alerts/{id}/ack")` with
    `who: Annotated[Principal, Depends(require_role("technician", "admin"))]`.
    """
    if not roles:
        raise ValueError("require_role needs at least one role")
    allowed = frozenset(roles)

    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"role '{principal.role}' may not do this; needs one of: {', '.join(sorted(allowed))}",
            )
        return principal

    return check


# --- pages ------------------------------------------------------------------------------------------------
def page_principal(request: Request) -> Principal | None:
    """The signed-in user of a browser page request (its session cookie; a bearer header works too), or None.

    A page route answers `login_redirect(request)` when this is None and `login_required(request)`:
        who = page_principal(request)
        if who is None and login_required(request):
            return login_redirect(request)
    """
    return principal_of(request)


def login_required(request: Request) -> bool:
    """Whether pages need a login: yes wherever accounts exist (a gateway without its business store has site-file
    tokens only, and its page asks for one)."""
    return accounts_of(request) is not None


def login_redirect(request: Request) -> RedirectResponse:
    """303 to the login page, which comes back to this page (path and query only: never another site) after."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=status.HTTP_303_SEE_OTHER,
                            headers={"Cache-Control": "no-store"})
