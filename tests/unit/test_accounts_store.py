"""Accounts in a real business store file: users, tokens, sessions, pairing codes and the audit log, on a stepped
clock; and what survives a restart (a second store on the same file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts.credentials import Passwords
from gateway.accounts.store import (
    AccountError,
    Accounts,
    UnknownUser,
    UserExists,
)
from gateway.store import Store

NS = 1_000_000_000
DAY = 86_400
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.t = 1_794_985_200 * NS

    def __call__(self) -> int:
        return self.t

    def step(self, seconds: float) -> None:
        self.t += int(seconds * NS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_accounts(path: Path, clock: Clock, passwords: Passwords = FAST) -> Accounts:
    return Accounts(Store(path / "business.sqlite"), clock=clock, partners=lambda: {"acme", "lab"},
                    passwords=passwords)


@pytest.fixture
def accounts(tmp_path: Path, clock: Clock) -> Accounts:
    accounts = open_accounts(tmp_path, clock)
    accounts.add_user("timur", "technician", password=PASSWORD, by="test")
    return accounts


def test_users_tokens_and_sessions_survive_a_restart(accounts: Accounts, tmp_path: Path, clock: Clock) -> None:
    token = accounts.issue_token("timur", label="script", by="test")
    account = accounts.check_login("timur", PASSWORD)
    assert account is not None
    session = accounts.open_session(account)
    accounts.store.close()
    again = open_accounts(tmp_path, clock)
    assert [u.name for u in again.users()] == ["timur"]
    assert again.by_token(token.secret) == account
    active = again.by_session(session.secret)
    assert active is not None
    assert active.csrf == session.csrf
    assert again.check_login("timur", PASSWORD) == account


def test_names_roles_and_partners_are_checked(accounts: Accounts) -> None:
    with pytest.raises(AccountError, match="is not valid"):
        accounts.add_user("-x", "admin", by="test")
    with pytest.raises(AccountError, match="is not valid"):
        accounts.add_user("a b", "admin", by="test")
    with pytest.raises(AccountError, match="unknown role 'viewer'; use one of: admin, technician, partner, kiosk"):
        accounts.add_user("v", "viewer", by="test")
    with pytest.raises(AccountError, match="partner is only for accounts with role partner"):
        accounts.add_user("k", "kiosk", partner="acme", by="test")
    with pytest.raises(UserExists):
        accounts.add_user("timur", "admin", by="test")
    with pytest.raises(UnknownUser):
        accounts.set_role("ghost", "admin", by="test")
    assert accounts.add_user("p", "partner", partner="acme", by="test").partner == "acme"


def test_revoking_a_user_stops_its_tokens_and_sessions_and_keeps_the_name(accounts: Accounts) -> None:
    token = accounts.issue_token("timur", by="test")
    session = accounts.open_session(accounts.check_login("timur", PASSWORD))
    assert accounts.revoke_user("timur", by="admin") is True
    assert accounts.by_token(token.secret) is None
    assert accounts.by_session(session.secret) is None
    assert accounts.check_login("timur", PASSWORD) is None
    assert accounts.revoke_user("timur", by="admin") is False
    with pytest.raises(UserExists):
        accounts.add_user("timur", "technician", by="test")
    with pytest.raises(AccountError, match="is revoked"):
        accounts.issue_token("timur", by="test")
    actions = [e["action"] for e in accounts.audit_log()]
    assert actions[0] == "user_revoked"


def test_a_new_password_ends_the_sessions_but_not_the_tokens(accounts: Accounts) -> None:
    token = accounts.issue_token("timur", by="test")
    session = accounts.open_session(accounts.check_login("timur", PASSWORD))
    with pytest.raises(AccountError, match="at least 10 characters"):
        accounts.set_password("timur", "short", by="test")
    accounts.set_password("timur", "another long password", by="test")
    assert accounts.by_session(session.secret) is None
    assert accounts.by_token(token.secret) is not None
    assert accounts.check_login("timur", PASSWORD) is None
    assert accounts.check_login("timur", "another long password") is not None


def test_a_password_hashed_with_weaker_parameters_is_rehashed_at_login(tmp_path: Path, clock: Clock) -> None:
    weak = open_accounts(tmp_path, clock)
    weak.add_user("old", "admin", password=PASSWORD, by="test")
    weak.store.close()
    stronger = open_accounts(tmp_path, clock, Passwords(PasswordHasher(time_cost=2, memory_cost=2048,
                                                                       parallelism=1)))
    before = stronger.store.one("SELECT password FROM users")["password"]
    assert stronger.check_login("old", PASSWORD) is not None
    after = stronger.store.one("SELECT password FROM users")["password"]
    assert "m=1024,t=1" in before
    assert "m=2048,t=2" in after


def test_token_lifetimes_are_bounded(accounts: Accounts, clock: Clock) -> None:
    with pytest.raises(AccountError, match="1 to 3650 days, not 0"):
        accounts.issue_token("timur", days=0, by="test")
    token = accounts.issue_token("timur", days=2, by="test")
    clock.step(2 * DAY - 1)
    assert accounts.by_token(token.secret) is not None
    clock.step(1)
    assert accounts.by_token(token.secret) is None
    assert accounts.by_token("kgt_" + "x" * 43) is None


def test_expired_sessions_are_dropped_as_new_ones_open(accounts: Accounts, clock: Clock) -> None:
    account = accounts.check_login("timur", PASSWORD)
    assert account is not None
    accounts.open_session(account)
    clock.step(12 * 3600)
    accounts.open_session(account)
    assert accounts.store.one("SELECT COUNT(*) AS n FROM sessions")["n"] == 1


def test_a_pairing_code_works_once_within_ten_minutes_for_an_active_kiosk(accounts: Accounts,
                                                                          clock: Clock) -> None:
    code, expires = accounts.pairing_code("wall", by="admin")
    assert expires == clock() + 600 * NS
    assert accounts.user("wall").role == "kiosk"
    session = accounts.pair(f"{code[:4].lower()}-{code[4:]}")
    assert session is not None
    assert session.kiosk
    assert session.account.role == "kiosk"
    assert session.expires_ns == clock() + 365 * DAY * NS
    assert accounts.pair(code) is None
    late, _ = accounts.pairing_code("wall", by="admin")
    clock.step(600)
    assert accounts.pair(late) is None
    revoked, _ = accounts.pairing_code("wall", by="admin")
    accounts.revoke_user("wall", by="admin")
    assert accounts.pair(revoked) is None
    assert accounts.by_session(session.secret) is None
    with pytest.raises(AccountError, match="is not an active kiosk"):
        accounts.pairing_code("wall", by="admin")
    with pytest.raises(AccountError, match="is not an active kiosk"):
        accounts.pairing_code("timur", by="admin")


def test_the_audit_log_names_who_did_what_to_whom_newest_first(accounts: Accounts) -> None:
    accounts.set_role("timur", "partner", partner="lab", by="alice", address="10.0.0.7")
    accounts.audit("timur", "login_failed", "timur", address="10.0.0.9")
    log = accounts.audit_log()
    assert [(e["actor"], e["action"], e["target"], e["address"]) for e in log] == [
        ("timur", "login_failed", "timur", "10.0.0.9"), ("alice", "role_changed", "timur", "10.0.0.7"),
        ("test", "user_added", "timur", None)]
    assert log[1]["detail"] == {"from": "technician", "from_partner": None, "to": "partner", "to_partner": "lab"}
    assert [e["action"] for e in accounts.audit_log(action="role_changed", limit=5)] == ["role_changed"]
