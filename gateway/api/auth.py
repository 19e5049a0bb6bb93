"""Bearer-token authentication and role checks for the HTTP API and the live WebSocket.

Tokens come from `ApiContext.tokens` (token -> (name, role)); the app keeps its context in `app.state.ctx`, so
these dependencies work for any router included into an app built by `create_app`.

A token of role `partner` is bound to one partner (`ApiContext.partners`, from `api.tokens[].partner`): it reads
only that partner's usage and statements (the billing routes, which use `any_principal`); every other route
answers it 403 (`current_principal`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from gateway.api.context import ApiContext, Role

# auto_error=False: we answer 401 with `WWW-Authenticate: Bearer` ourselves; the scheme still documents the
# "Authorize" button in /docs
bearer_scheme = HTTPBearer(auto_error=False, description="A gateway token: `Authorization: Bearer <token>`")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request."""

    name: str
    role: Role
    partner: str | None = None  # the partner a token of role partner belongs to (from the credential, never asked)


def context_of(conn: HTTPConnection) -> ApiContext:
    ctx: ApiContext = conn.app.state.ctx
    return ctx


def find_principal(tokens: Mapping[str, tuple[str, Role]], presented: str | None) -> Principal | None:
    """The owner of `presented`, comparing against every token in constant time (no early exit)."""
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


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def any_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the caller, partners included, or 401 when the bearer token is missing or unknown."""
    if credentials is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    ctx = context_of(request)
    principal = find_principal(ctx.tokens, credentials.credentials)
    if principal is None:
        raise _unauthorized("invalid token")
    if principal.role == "partner":
        principal = replace(principal, partner=ctx.partners.get(credentials.credentials))
    return principal


def current_principal(principal: Annotated[Principal, Depends(any_principal)]) -> Principal:
    """FastAPI dependency: the caller, 401 without a valid token, 403 for a partner token (it reads only its
    usage and statements)."""
    if principal.role == "partner":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail="a partner token reads only its own usage and statements (/api/v1/usage, "
                                   "/api/v1/billing/statements/...)")
    return principal


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    """FastAPI dependency factory: the caller, 401 without a valid token, 403 when the role is not in `roles`.

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
