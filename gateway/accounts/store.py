"""Users, API tokens, browser sessions, kiosk pairing codes and the audit log in the business store.

The tables are created when `Accounts` is first built on a store (as the billing ledger does). Secrets are never
stored: passwords as argon2id hashes, tokens, session ids and pairing codes as SHA-256 digests (credentials.py).
A revoked user's tokens and sessions stop working at once (every lookup joins the user); rows are kept, marked
revoked, so that the audit log keeps naming them.

Roles: `admin` (everything), `technician` (operations: alerts, maintenance), `kiosk` (reads the board; no
billing) and `partner` (bound to one partner of billing.partners; reads only that partner's usage and
statements). Site-file tokens (api.tokens) keep their own roles, `viewer` among them (read only, as a kiosk).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from gateway.accounts.credentials import (
    MIN_PASSWORD_LENGTH,
    Passwords,
    digest,
    new_pairing_code,
    new_secret,
    new_token,
    normal_pairing_code,
)
from gateway.errors import KartechError
from gateway.store import Store

AccountRole = Literal["admin", "technician", "partner", "kiosk"]
ROLES: tuple[str, ...] = get_args(AccountRole)
NS = 1_000_000_000
DAY_NS = 86_400 * NS
SESSION_TTL_NS = 12 * 3600 * NS  # a person's browser session: a working day
KIOSK_SESSION_TTL_NS = 365 * DAY_NS  # a wall screen: paired once a year at most
PAIRING_TTL_NS = 10 * 60 * NS
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3650
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    partner TEXT,
    password TEXT,
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    label TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    revoked_ns INTEGER,
    used_day INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    kiosk INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    revoked_ns INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user)",
    """CREATE TABLE IF NOT EXISTS pairing_codes (
    digest TEXT PRIMARY KEY,
    kiosk TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    used_ns INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    address TEXT,
    detail TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (ts_ns)",
)


class AccountError(KartechError):
    """A request about accounts that cannot be done; the message says why."""


class UnknownUser(AccountError):
    pass


class UserExists(AccountError):
    pass


@dataclass(frozen=True, slots=True)
class Account:
    """Who a token, a session or a password belongs to."""

    name: str
    role: AccountRole
    partner: str | None


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: AccountRole
    partner: str | None
    has_password: bool
    created_ns: int
    revoked_ns: int | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    user: str
    label: str
    created_ns: int
    expires_ns: int
    revoked_ns: int | None
    used_day: int | None  # the last UTC day (days since the epoch) it was used on: use is recorded once a day


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: `secret` is shown once and never stored."""

    id: int
    secret: str
    expires_ns: int


@dataclass(frozen=True, slots=True)
class Session:
    """A browser session: `secret` goes into the cookie; `csrf` is sent back in X-CSRF-Token on unsafe requests."""

    account: Account
    secret: str
    csrf: str
    kiosk: bool
    expires_ns: int


@dataclass(frozen=True, slots=True)
class ActiveSession:
    account: Account
    csrf: str
    kiosk: bool
    expires_ns: int


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise AccountError("a password of more than 1024 characters is refused")


class Accounts:
    """Every operation on accounts. `partners` gives the partner ids of the site (billing.partners) at call time;
    `clock` is nanoseconds since the epoch."""

    def __init__(self, store: Store, *, clock: Callable[[], int], partners: Callable[[], Collection[str]],
                 passwords: Passwords | None = None) -> None:
        self.store = store
        self.clock = clock
        self.partners = partners
        self.passwords = passwords or Passwords()
        for sql in SCHEMA:
            store.execute(sql)

    # --- users --------------------------------------------------------------------------------------------
    def _check_role(self, role: str, partner: str | None) -> AccountRole:
        if role not in ROLES:
            raise AccountError(f"unknown role '{role}'; use one of: {', '.join(ROLES)}")
        if role == "partner":
            known = self.partners()
            if partner is None:
                raise AccountError("a partner account needs its partner (one of billing.partners)")
            if partner not in known:
                listed = ", ".join(sorted(known)) or "none: the site file has no billing.partners"
                raise AccountError(f"unknown partner '{partner}'; billing.partners has: {listed}")
        elif partner is not None:
            raise AccountError(f"partner is only for accounts with role partner (this one has role {role})")
        return role  # type: ignore[return-value]

    def add_user(self, name: str, role: str, *, partner: str | None = None, password: str | None = None,
                 by: str, address: str | None = None) -> User:
        if not NAME_PATTERN.match(name):
            raise AccountError(f"user name '{name[:80]}' is not valid: 1 to 64 letters, digits and . _ @ -, "
                               "starting with a letter or digit")
        checked = self._check_role(role, partner)
        if password is not None:
            check_password(password)
        hashed = self.passwords.hash(password) if password is not None else None
        now = self.clock()
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None:
                raise UserExists(f"user '{name}' exists already (a revoked user's name is not reused)")
            db.execute("INSERT INTO users (name, role, partner, password, created_ns) VALUES (?, ?, ?, ?, ?)",
                       (name, checked, partner, hashed, now))
            self._audit(db, by, "user_added", name, address, {"role": checked, "partner": partner})
        return User(name, checked, partner, hashed is not None, now, None)

    def users(self) -> list[User]:
        return [self._user(r) for r in self.store.query("SELECT * FROM users ORDER BY name")]

    def user(self, name: str) -> User:
        row = self.store.one("SELECT * FROM users WHERE name = ?", (name,))
        if row is None:
            raise UnknownUser(f"unknown user '{name[:80]}'")
        return self._user(row)

    @staticmethod
    def _user(row: Any) -> User:
        return User(row["name"], row["role"], row["partner"], row["password"] is not None, row["created_ns"],
                    row["revoked_ns"])

    def _active(self, name: str) -> User:
        user = self.user(name)
        if user.revoked_ns is not None:
            raise AccountError(f"user '{name}' is revoked")
        return user

    def set_password(self, name: str, password: str, *, by: str, address: str | None = None,
                     keep_session: str | None = None) -> None:
        """A new password; the user's browser sessions end (its API tokens stay), all but `keep_session` (the
        secret of the session in which users change their own password)."""
        self._active(name)
        check_password(password)
        hashed = self.passwords.hash(password)
        now = self.clock()
        kept = digest(keep_session) if keep_session else None
        with self.store.transaction() as db:
            db.execute("UPDATE users SET password = ? WHERE name = ?", (hashed, name))
            ended = db.execute("UPDATE sessions SET revoked_ns = ? WHERE user = ? AND revoked_ns IS NULL "
                               "AND digest IS NOT ?", (now, name, kept)).rowcount
            self._audit(db, by, "password_set", name, address, {"sessions_ended": ended})

    def set_role(self, name: str, role: str, *, partner: str | None = None, by: str,
                 address: str | None = None) -> User:
        """A new role (and partner); the user's sessions end, so no page keeps the old rights."""
        old = self._active(name)
        checked = self._check_role(role, partner)
        now = self.clock()
        with self.store.transaction() as db:
            db.execute("UPDATE users SET role = ?, partner = ? WHERE name = ?", (checked, partner, name))
            db.execute("UPDATE sessions SET revoked_ns = ? WHERE user = ? AND revoked_ns IS NULL", (now, name))
            self._audit(db, by, "role_changed", name, address, {"from": old.role, "from_partner": old.partner,
                                                               "to": checked, "to_partner": partner})
        return self.user(name)

    def revoke_user(self, name: str, *, by: str, address: str | None = None) -> bool:
        """Revoke a user with every token and session (False when it was revoked already)."""
        self.user(name)
        now = self.clock()
        with self.store.transaction() as db:
            cur = db.execute("UPDATE users SET revoked_ns = ? WHERE name = ? AND revoked_ns IS NULL", (now, name))
            if cur.rowcount == 0:
                return False
            db.execute("UPDATE api_tokens SET revoked_ns = ? WHERE user = ? AND revoked_ns IS NULL", (now, name))
            db.execute("UPDATE sessions SET revoked_ns = ? WHERE user = ? AND revoked_ns IS NULL", (now, name))
            self._audit(db, by, "user_revoked", name, address, {})
        return True

    # --- API tokens ---------------------------------------------------------------------------------------
    def issue_token(self, name: str, *, label: str = "", days: int = DEFAULT_TOKEN_DAYS, by: str,
                    address: str | None = None) -> NewToken:
        self._active(name)
        if not 1 <= days <= MAX_TOKEN_DAYS:
            raise AccountError(f"a token lives 1 to {MAX_TOKEN_DAYS} days, not {days}")
        secret = new_token()
        now = self.clock()
        expires = now + days * DAY_NS
        with self.store.transaction() as db:
            cur = db.execute("INSERT INTO api_tokens (digest, user, label, created_ns, expires_ns) "
                             "VALUES (?, ?, ?, ?, ?)", (digest(secret), name, label[:200], now, expires))
            token_id = int(cur.lastrowid or 0)
            self._audit(db, by, "token_issued", name, address, {"token": token_id, "label": label[:200],
                                                                "days": days})
        return NewToken(token_id, secret, expires)

    def tokens(self, name: str | None = None) -> list[TokenInfo]:
        sql, params = "SELECT * FROM api_tokens", list[Any]()
        if name is not None:
            sql += " WHERE user = ?"
            params.append(name)
        return [TokenInfo(r["id"], r["user"], r["label"], r["created_ns"], r["expires_ns"], r["revoked_ns"],
                          r["used_day"])
                for r in self.store.query(sql + " ORDER BY id", params)]

    def revoke_token(self, name: str, token_id: int, *, by: str, address: str | None = None) -> bool:
        """Revoke one token of a user (False when it was revoked already); UnknownUser for a token not theirs."""
        now = self.clock()
        with self.store.transaction() as db:
            row = db.execute("SELECT revoked_ns FROM api_tokens WHERE id = ? AND user = ?",
                             (token_id, name)).fetchone()
            if row is None:
                raise UnknownUser(f"user '{name[:80]}' has no token {token_id}")
            if row["revoked_ns"] is not None:
                return False
            db.execute("UPDATE api_tokens SET revoked_ns = ? WHERE id = ?", (now, token_id))
            self._audit(db, by, "token_revoked", name, address, {"token": token_id})
        return True

    def by_token(self, secret: str, *, address: str | None = None) -> Account | None:
        """The owner of a valid (known, unexpired, unrevoked) token of an active user, or None. The first use of
        a token on a (UTC) day is written to the audit log."""
        now = self.clock()
        row = self.store.one(
            "SELECT t.id, t.used_day, u.name, u.role, u.partner FROM api_tokens t JOIN users u ON u.name = t.user "
            "WHERE t.digest = ? AND t.revoked_ns IS NULL AND t.expires_ns > ? AND u.revoked_ns IS NULL",
            (digest(secret), now))
        if row is None:
            return None
        day = now // DAY_NS
        if row["used_day"] != day:
            with self.store.transaction() as db:
                cur = db.execute("UPDATE api_tokens SET used_day = ? WHERE id = ? AND used_day IS NOT ?",
                                 (day, row["id"], day))
                if cur.rowcount:  # one audit line even when two requests race here
                    self._audit(db, row["name"], "token_used", row["name"], address, {"token": row["id"]})
        return Account(row["name"], row["role"], row["partner"])

    # --- passwords and sessions ---------------------------------------------------------------------------
    def check_login(self, name: str, password: str) -> Account | None:
        """The account when `password` is the active user's, else None (in the time a check takes either way)."""
        row = self.store.one("SELECT * FROM users WHERE name = ? AND revoked_ns IS NULL", (name,))
        stored: str | None = row["password"] if row is not None else None
        if not self.passwords.verify(stored, password) or row is None or stored is None:
            return None
        if self.passwords.outdated(stored):
            self.store.execute("UPDATE users SET password = ? WHERE name = ?", (self.passwords.hash(password), name))
        return Account(row["name"], row["role"], row["partner"])

    def open_session(self, account: Account, *, kiosk: bool = False, address: str | None = None) -> Session:
        secret, csrf = new_secret(), new_secret()
        now = self.clock()
        expires = now + (KIOSK_SESSION_TTL_NS if kiosk else SESSION_TTL_NS)
        with self.store.transaction() as db:
            db.execute("INSERT INTO sessions (digest, user, csrf, kiosk, created_ns, expires_ns) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (digest(secret), account.name, csrf, int(kiosk), now, expires))
            self._audit(db, account.name, "kiosk_paired" if kiosk else "login", account.name, address, {})
            # expired sessions are of no use to anyone: dropped as new ones start
            db.execute("DELETE FROM sessions WHERE expires_ns <= ?", (now,))
        return Session(account, secret, csrf, kiosk, expires)

    def by_session(self, secret: str) -> ActiveSession | None:
        row = self.store.one(
            "SELECT s.csrf, s.kiosk, s.expires_ns, u.name, u.role, u.partner FROM sessions s "
            "JOIN users u ON u.name = s.user WHERE s.digest = ? AND s.revoked_ns IS NULL AND s.expires_ns > ? "
            "AND u.revoked_ns IS NULL", (digest(secret), self.clock()))
        if row is None:
            return None
        return ActiveSession(Account(row["name"], row["role"], row["partner"]), row["csrf"], bool(row["kiosk"]),
                             row["expires_ns"])

    def end_session(self, secret: str, *, address: str | None = None) -> bool:
        now = self.clock()
        with self.store.transaction() as db:
            row = db.execute("SELECT user FROM sessions WHERE digest = ? AND revoked_ns IS NULL",
                             (digest(secret),)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE sessions SET revoked_ns = ? WHERE digest = ?", (now, digest(secret)))
            self._audit(db, row["user"], "logout", row["user"], address, {})
        return True

    # --- kiosk pairing ------------------------------------------------------------------------------------
    def pairing_code(self, kiosk: str, *, by: str, address: str | None = None) -> tuple[str, int]:
        """A single-use code (valid ten minutes) that pairs a wall screen as kiosk user `kiosk`, made if new."""
        now = self.clock()
        try:
            user = self.user(kiosk)
        except UnknownUser:
            user = self.add_user(kiosk, "kiosk", by=by, address=address)
        if user.role != "kiosk" or user.revoked_ns is not None:
            raise AccountError(f"user '{kiosk}' is not an active kiosk (role {user.role}"
                               f"{', revoked' if user.revoked_ns is not None else ''}); choose another name")
        code = new_pairing_code()
        expires = now + PAIRING_TTL_NS
        with self.store.transaction() as db:
            db.execute("INSERT INTO pairing_codes (digest, kiosk, created_by, created_ns, expires_ns) "
                       "VALUES (?, ?, ?, ?, ?)", (digest(code), kiosk, by, now, expires))
            self._audit(db, by, "pairing_code", kiosk, address, {"expires_ns": expires})
            db.execute("DELETE FROM pairing_codes WHERE expires_ns <= ?", (now,))
        return code, expires

    def pair(self, code: str, *, address: str | None = None) -> Session | None:
        """A long-lived kiosk session for a valid, unused code (which is used up), or None."""
        now = self.clock()
        with self.store.transaction() as db:
            key = digest(normal_pairing_code(code))
            row = db.execute("SELECT kiosk FROM pairing_codes WHERE digest = ? AND used_ns IS NULL "
                             "AND expires_ns > ?", (key, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE pairing_codes SET used_ns = ? WHERE digest = ?", (now, key))
            user = db.execute("SELECT * FROM users WHERE name = ? AND revoked_ns IS NULL AND role = 'kiosk'",
                              (row["kiosk"],)).fetchone()
            if user is None:
                return None
            return self.open_session(Account(user["name"], "kiosk", None), kiosk=True, address=address)

    # --- audit --------------------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str | None = None, *, address: str | None = None,
              **detail: Any) -> None:
        with self.store.transaction() as db:
            self._audit(db, actor, action, target, address, detail)

    def _audit(self, db: Any, actor: str, action: str, target: str | None, address: str | None,
               detail: dict[str, Any]) -> None:
        db.execute("INSERT INTO audit (ts_ns, actor, action, target, address, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   (self.clock(), actor, action, target, address, json.dumps(detail, ensure_ascii=False)))

    def audit_log(self, *, limit: int = 1000, action: str | None = None) -> list[dict[str, Any]]:
        """The newest entries first."""
        sql, params = "SELECT * FROM audit", list[Any]()
        if action is not None:
            sql += " WHERE action = ?"
            params.append(action)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [{"id": r["id"], "ts_ns": r["ts_ns"], "actor": r["actor"], "action": r["action"],
                 "target": r["target"], "address": r["address"], "detail": json.loads(r["detail"])}
                for r in self.store.query(sql, params)]
