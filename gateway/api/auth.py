"""Bearer-token authentication and role checks for the HTTP API and the live WebSocket.

Tokens come from `ApiContext.tokens` (token -> (name, role)); the app keeps its context in `app.state.ctx`, so
these dependencies work for any router included into an app built by `create_app`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the caller, or 401 when the bearer token is missing or unknown."""
    if credentials is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = find_principal(context_of(request).tokens, credentials.credentials)
    if principal is None:
        raise _unauthorized("invalid token")
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
