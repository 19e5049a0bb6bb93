"""The logins `kartech demo` prints: one account per role with a password made at start (never written anywhere
but the business store, as a hash), and a pairing link for a wall screen."""

from __future__ import annotations

import secrets

from gateway.accounts.store import Accounts, UnknownUser

ACTOR = "kartech-demo"


def _login(accounts: Accounts, name: str, role: str, partner: str | None = None) -> str:
    password = secrets.token_urlsafe(12)
    try:
        user = accounts.user(name)
    except UnknownUser:
        accounts.add_user(name, role, partner=partner, password=password, by=ACTOR)
        return password
    if user.revoked_ns is not None:
        raise RuntimeError(f"the demo user '{name}' was revoked in this data directory; use another --data-dir")
    if (user.role, user.partner) != (role, partner):
        accounts.set_role(name, role, partner=partner, by=ACTOR)
    accounts.set_password(name, password, by=ACTOR)  # a data directory kept from an earlier run
    return password


def demo_logins(accounts: Accounts, base_url: str, *, partner: str | None) -> str:
    """The lines to print (base_url ends with a slash)."""
    rows = [("admin", "admin", _login(accounts, "admin", "admin"), ""),
            ("technician", "tech", _login(accounts, "tech", "technician"), "")]
    if partner is not None:
        rows.append(("partner", "partner", _login(accounts, "partner", "partner", partner), f"  ({partner})"))
    code, _ = accounts.pairing_code("wall", by=ACTOR)
    lines = [f"  sign in at {base_url}login — passwords made for this run only:"]
    lines += [f"    {role:<11} {name:<8} {password}{note}" for role, name, password, note in rows]
    lines.append(f"    {'kiosk':<11} open {base_url}pair#{code} on the wall screen within 10 minutes "
                 f"(or type {code[:4]}-{code[4:]} at {base_url}pair)")
    return "\n".join(lines)
