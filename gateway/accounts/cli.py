"""`kartech users ...`: accounts in the business store of a site's data directory (made if new, so the first admin
exists before the gateway's first start; the gateway may be running).

Passwords are read from the terminal (twice) or, with --password-stdin, as one line of standard input; a new token
is printed once, on standard output, and never again.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.accounts.store import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS, ROLES, AccountError, Accounts
from gateway.datadir import private_dir
from gateway.reading import now_ns
from gateway.state.model import iso
from gateway.store import Store

BUSINESS_STORE = "business.sqlite"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _open(args: argparse.Namespace) -> Accounts:
    from gateway.config.loader import load
    from gateway.registry import discover

    cfg = load(args.config, discover())
    data_dir = private_dir(Path(args.data_dir or cfg.storage.data_dir))
    partners = frozenset(p.id for p in cfg.billing.partners) if cfg.billing is not None else frozenset[str]()
    return Accounts(Store(data_dir / BUSINESS_STORE), clock=now_ns, partners=lambda: partners)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ; nothing changed")
    return first


def _print_token(token_id: int, secret: str, expires_ns: int) -> None:
    print(secret)
    print(f"token {token_id}, valid until {iso(expires_ns)}: shown this once, store it now", file=sys.stderr)


def cmd_add(args: argparse.Namespace, accounts: Accounts) -> None:
    password = None if args.no_password or args.role == "kiosk" else _password(args)
    accounts.add_user(args.name, args.role, partner=args.partner, password=password, by=_actor())
    print(f"user {args.name} added (role {args.role}{f', partner {args.partner}' if args.partner else ''})",
          file=sys.stderr)
    if args.token is not None:
        token = accounts.issue_token(args.name, label=args.token, days=args.token_days, by=_actor())
        _print_token(token.id, token.secret, token.expires_ns)


def cmd_list(args: argparse.Namespace, accounts: Accounts) -> None:
    tokens = accounts.tokens()
    for u in accounts.users():
        mine = [t for t in tokens if t.user == u.name and t.revoked_ns is None]
        print("\t".join([u.name, u.role, u.partner or "-", "revoked" if u.revoked_ns is not None else "active",
                         "password" if u.has_password else "no password",
                         ", ".join(f"token {t.id} {t.label or '-'} until {iso(t.expires_ns)}" for t in mine)
                         or "no tokens"]))


def cmd_revoke(args: argparse.Namespace, accounts: Accounts) -> None:
    if args.token is not None:
        done = accounts.revoke_token(args.name, args.token, by=_actor())
        print(f"token {args.token} of {args.name} {'revoked' if done else 'was revoked already'}", file=sys.stderr)
        return
    done = accounts.revoke_user(args.name, by=_actor())
    print(f"user {args.name} {'revoked, with every token and session' if done else 'was revoked already'}",
          file=sys.stderr)


def cmd_passwd(args: argparse.Namespace, accounts: Accounts) -> None:
    accounts.user(args.name)  # an unknown user is said before a password is asked for
    accounts.set_password(args.name, _password(args), by=_actor())
    print(f"password of {args.name} changed; its browser sessions ended", file=sys.stderr)


def cmd_role(args: argparse.Namespace, accounts: Accounts) -> None:
    accounts.set_role(args.name, args.role, partner=args.partner, by=_actor())
    print(f"{args.name} is now {args.role}{f' of {args.partner}' if args.partner else ''}; its browser sessions "
          "ended", file=sys.stderr)


def cmd_token(args: argparse.Namespace, accounts: Accounts) -> None:
    token = accounts.issue_token(args.name, label=args.label, days=args.days, by=_actor())
    _print_token(token.id, token.secret, token.expires_ns)


def _run(command: Callable[[argparse.Namespace, Accounts], None]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            accounts = _open(args)
        except OSError as err:
            print(f"kartech users: cannot open the business store: {err}", file=sys.stderr)
            return 1
        try:
            command(args, accounts)
        except AccountError as err:
            print(f"kartech users {args.users_command}: {err}", file=sys.stderr)
            return 1
        finally:
            accounts.store.close()
        return 0

    return run


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="accounts of the web app and the API (roles admin, technician, partner, "
                                         "kiosk)")
    usub = users.add_subparsers(dest="users_command", required=True)

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace, Accounts], None],
                ) -> argparse.ArgumentParser:
        p = usub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="site YAML file")
        p.add_argument("--data-dir", default=None, help="the gateway's data directory (default: storage.data_dir)")
        p.set_defaults(func=_run(func))
        return p

    a = command("add", "add a user (asks for its password; kiosks have none: pair them)", cmd_add)
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--partner", default=None, help="with --role partner: its partner id (billing.partners)")
    a.add_argument("--password-stdin", action="store_true", help="read the password as one line of stdin")
    a.add_argument("--no-password", action="store_true", help="no password: the user works with tokens only")
    a.add_argument("--token", nargs="?", const="", default=None, metavar="LABEL",
                   help="also make an API token (printed once)")
    a.add_argument("--token-days", type=int, default=DEFAULT_TOKEN_DAYS, help=f"token lifetime, 1 to {MAX_TOKEN_DAYS}")

    command("list", "every user: name, role, partner, state, password, live tokens", cmd_list)

    r = command("revoke", "revoke a user (every token and session stops at once), or one token", cmd_revoke)
    r.add_argument("name")
    r.add_argument("--token", type=int, default=None, metavar="ID", help="revoke only this token (see list)")

    p = command("passwd", "set a user's password (its browser sessions end)", cmd_passwd)
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password as one line of stdin")

    ro = command("role", "change a user's role (audited; its browser sessions end)", cmd_role)
    ro.add_argument("name")
    ro.add_argument("role", choices=ROLES)
    ro.add_argument("--partner", default=None, help="with role partner: its partner id")

    t = command("token", "a new API token for a user (printed once)", cmd_token)
    t.add_argument("name")
    t.add_argument("--label", default="", help="what the token is for, e.g. 'nightly export'")
    t.add_argument("--days", type=int, default=DEFAULT_TOKEN_DAYS, help=f"lifetime, 1 to {MAX_TOKEN_DAYS}")
