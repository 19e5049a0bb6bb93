"""`kartech users ...` on the business store of a site's data directory: what a technician types and reads."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from kit.bill import BILLING
from kit.ops import MACHINES

from gateway.accounts.credentials import Passwords
from gateway.accounts.store import Accounts
from gateway.cli import main
from gateway.reading import now_ns
from gateway.store import Store

PASSWORD = "correct horse battery"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text("site: {id: krg, name: Test hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES
                    + BILLING + f"storage: {{data_dir: {tmp_path / 'data'}}}\n", encoding="utf-8")
    return path


def users(site: Path, *args: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["users", args[0], "--config", str(site), *args[1:]])


def stored(site: Path) -> Accounts:
    return Accounts(Store(site.parent / "data" / "business.sqlite"), clock=now_ns, partners=lambda: {"acme"},
                    passwords=Passwords())


def test_add_list_passwd_role_revoke(site: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert users(site, "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n",
                 monkeypatch=monkeypatch) == 0
    assert "user alice added (role admin)" in capsys.readouterr().err
    assert users(site, "add", "acme-portal", "--role", "partner", "--partner", "acme", "--no-password",
                 "--token", "statements", monkeypatch=monkeypatch) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("kgt_")
    assert "shown this once" in err
    assert users(site, "list", monkeypatch=monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("acme-portal\tpartner\tacme\tactive\tno password\ttoken 1 statements until ")
    assert lines[1] == "alice\tadmin\t-\tactive\tpassword\tno tokens"
    assert token not in "\n".join(lines)

    accounts = stored(site)
    assert accounts.check_login("alice", PASSWORD) is not None
    assert accounts.by_token(token) is not None
    assert users(site, "passwd", "alice", "--password-stdin", stdin="another long one\n",
                 monkeypatch=monkeypatch) == 0
    assert accounts.check_login("alice", "another long one") is not None
    assert users(site, "role", "alice", "technician", monkeypatch=monkeypatch) == 0
    assert accounts.user("alice").role == "technician"
    assert users(site, "revoke", "acme-portal", "--token", "1", monkeypatch=monkeypatch) == 0
    assert accounts.by_token(token) is None
    assert users(site, "revoke", "alice", monkeypatch=monkeypatch) == 0
    assert accounts.check_login("alice", "another long one") is None
    assert "revoked, with every token and session" in capsys.readouterr().err
    done = [(e["action"], e["target"]) for e in accounts.audit_log() if e["actor"].startswith("cli")]
    assert done == [("user_revoked", "alice"), ("token_revoked", "acme-portal"), ("role_changed", "alice"),
                    ("password_set", "alice"), ("token_issued", "acme-portal"), ("user_added", "acme-portal"),
                    ("user_added", "alice")]


def test_mistakes_are_said_and_change_nothing(site: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert users(site, "add", "bob", "--role", "partner", "--partner", "nobody", "--no-password",
                 monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err == ("kartech users add: unknown partner 'nobody'; billing.partners has: acme, "
                                       "lab\n")
    assert users(site, "add", "bob", "--role", "admin", "--password-stdin", stdin="short\n",
                 monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err == "kartech users add: a password needs at least 10 characters\n"
    assert users(site, "passwd", "ghost", "--password-stdin", stdin=PASSWORD, monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err == "kartech users passwd: unknown user 'ghost'\n"
    assert stored(site).users() == []


def test_a_token_for_an_existing_user(site: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert users(site, "add", "wall", "--role", "kiosk", monkeypatch=monkeypatch) == 0  # kiosks need no password
    assert users(site, "token", "wall", "--label", "signage", "--days", "30", monkeypatch=monkeypatch) == 0
    token = capsys.readouterr().out.strip()
    account = stored(site).by_token(token)
    assert account is not None
    assert account.role == "kiosk"
