"""The logins `kartech demo` prints: one per role, passwords made now, and a kiosk pairing link that works."""

from __future__ import annotations

import re
from pathlib import Path

from argon2 import PasswordHasher

from gateway.accounts.credentials import Passwords
from gateway.accounts.demo import demo_logins
from gateway.accounts.store import Accounts
from gateway.reading import now_ns
from gateway.store import Store

FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def test_one_login_per_role_with_fresh_passwords_each_start(tmp_path: Path) -> None:
    accounts = Accounts(Store(tmp_path / "business.sqlite"), clock=now_ns, partners=lambda: {"acme"},
                        passwords=FAST)
    text = demo_logins(accounts, "http://127.0.0.1:8080/", partner="acme")
    logins = dict(re.findall(r"^    (?:admin|technician|partner) +(\S+) +(\S+)", text, re.M))
    assert sorted(logins) == ["admin", "partner", "tech"]
    roles = {name: accounts.check_login(name, password) for name, password in logins.items()}
    assert {n: (a.role, a.partner) for n, a in roles.items() if a is not None} == {
        "admin": ("admin", None), "tech": ("technician", None), "partner": ("partner", "acme")}
    code = re.search(r"http://127\.0\.0\.1:8080/pair#([A-Z0-9]{8}) ", text)
    assert code is not None
    assert accounts.pair(code.group(1)) is not None

    again = demo_logins(accounts, "http://127.0.0.1:8080/", partner="acme")  # a kept --data-dir
    second = dict(re.findall(r"^    (?:admin|technician|partner) +(\S+) +(\S+)", again, re.M))
    assert all(second[n] != logins[n] for n in logins)
    assert accounts.check_login("admin", logins["admin"]) is None
    assert accounts.check_login("admin", second["admin"]) is not None
