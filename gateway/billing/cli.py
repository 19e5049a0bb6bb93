"""`kartech billing ...`: a partner's monthly statement, the usage no rule attributed, the partners and rate cards in
effect (the site file's with the changes made through the API, catalog.py), from the business store of a site's data
directory (read only; the gateway may be running); and closing a month (the API's rule, persist.close_over_month)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.billing.catalog import Catalog
from gateway.billing.documents import FORMATS, LANGS, render, statement_of
from gateway.billing.persist import CloseRefused, LedgerStore
from gateway.billing.view import StatementError
from gateway.config.site import SiteConfig
from gateway.store import Store

BUSINESS_STORE = "business.sqlite"


def open_ledger(cfg: SiteConfig, data_dir: str | None) -> LedgerStore:
    path = Path(data_dir or cfg.storage.data_dir) / BUSINESS_STORE
    if not path.is_file():
        raise StatementError(f"no business store at {path}: the gateway has not run with this data directory yet "
                             "(storage.data_dir, or --data-dir)")
    return LedgerStore(Store(path))


def cmd_statement(args: argparse.Namespace) -> int:
    from gateway.config.loader import load
    from gateway.registry import discover

    cfg = load(args.config, discover())
    try:
        ledger = open_ledger(cfg, args.data_dir)
        try:
            st = statement_of(cfg, ledger, args.partner, args.month, billing_at=Catalog(ledger.store, cfg).at)
            doc = render(st, args.format, args.lang, site_name=cfg.site.name,
                         machine_names={m.id: m.name for m in cfg.machines})
        finally:
            ledger.store.close()
    except StatementError as err:
        print(f"kartech billing statement: {err}", file=sys.stderr)
        return 1
    if args.out:
        try:
            Path(args.out).write_bytes(doc.content)
        except OSError as err:
            print(f"kartech billing statement: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
            return 1
        print(f"{args.out}: {args.format.upper()} statement of {args.partner} for {args.month}, "
              f"{len(st.lines)} lines, total {st.total} {st.currency}", file=sys.stderr)
    elif args.format == "pdf" and sys.stdout.isatty():
        print("kartech billing statement: a PDF is not shown on a terminal; use --out FILE", file=sys.stderr)
        return 1
    else:
        sys.stdout.buffer.write(doc.content)
        sys.stdout.flush()
    return 0


def cmd_unattributed(args: argparse.Namespace) -> int:
    from gateway.billing.periods import NS
    from gateway.config.loader import load
    from gateway.registry import discover
    from gateway.state.model import iso

    cfg = load(args.config, discover())
    try:
        ledger = open_ledger(cfg, args.data_dir)
    except StatementError as err:
        print(f"kartech billing unattributed: {err}", file=sys.stderr)
        return 1
    try:
        keys = {e.key for e in ledger.unattributed()}
        rows = [(i, e) for i, e in ledger.with_ids(unattributed=True, limit=1_000_000) if e.key in keys]
    finally:
        ledger.store.close()
    for i, e in rows:
        print(f"{i}\t{e.key}\t{e.machine}\t{e.job}\t{iso(e.start_ns)}\t{iso(e.end_ns)}\t"
              f"{e.running_ns / NS / 60:.1f} min")
    print(f"{len(rows)} unattributed entries (id, key, machine, job, start, end, running); assign one with "
          "POST /api/v1/usage/{id}/assign", file=sys.stderr)
    return 0


def _catalog(command: str, args: argparse.Namespace) -> Catalog | None:
    from gateway.config.loader import load
    from gateway.registry import discover

    cfg = load(args.config, discover())
    try:
        ledger = open_ledger(cfg, args.data_dir)
    except StatementError as err:
        print(f"kartech billing {command}: {err}", file=sys.stderr)
        return None
    return Catalog(ledger.store, cfg)


def cmd_partners(args: argparse.Namespace) -> int:
    from gateway.reading import now_ns

    catalog = _catalog("partners list", args)
    if catalog is None:
        return 1
    try:
        b = catalog.at(now_ns())
    finally:
        catalog.store.close()
    if b is None:
        print("kartech billing partners list: the site file has no billing section", file=sys.stderr)
        return 1
    for p in b.partners:
        projects = ",".join(x.id for x in b.projects if x.partner == p.id)
        print(f"{p.id}\t{p.name}\t{p.tier}\t{p.discount_pct}\t{projects}")
    print(f"{len(b.partners)} partners (id, name, tier, discount %, projects)", file=sys.stderr)
    return 0


def cmd_rates(args: argparse.Namespace) -> int:
    from gateway.reading import now_ns
    from gateway.state.model import iso

    catalog = _catalog("rates list", args)
    if catalog is None:
        return 1
    try:
        when = now_ns()
        b = catalog.at(when)
        since = catalog.since(when)
    finally:
        catalog.store.close()
    if b is None:
        print("kartech billing rates list: the site file has no billing section", file=sys.stderr)
        return 1
    for card in b.rates:
        applies = ",".join([*card.machines, *(f"kind:{k}" for k in card.kinds)])
        valid = iso(since[card.id]) if card.id in since else "site file"
        print(f"{card.id}\t{applies}\t{card.per_running_hour}\t{card.increment_min}\t{card.minimum_charge}\t"
              f"{card.setup_fee}\t{valid}")
    print(f"{len(b.rates)} rate cards in effect (id, machines and kinds, per running hour, increment min, minimum "
          "charge, setup fee, valid from)", file=sys.stderr)
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    import getpass

    from gateway.billing.periods import parse_month
    from gateway.config.loader import load
    from gateway.reading import now_ns
    from gateway.registry import discover

    try:
        year, _ = parse_month(args.month)
    except ValueError as err:
        print(f"kartech billing close: {err}", file=sys.stderr)
        return 1
    if not 1970 <= year <= 2199:
        print(f"kartech billing close: {args.month!r} is out of range; a month from 1970-01 to 2199-12",
              file=sys.stderr)
        return 1
    cfg = load(args.config, discover())
    try:
        ledger = open_ledger(cfg, args.data_dir)
    except StatementError as err:
        print(f"kartech billing close: {err}", file=sys.stderr)
        return 1
    try:
        by = args.by or f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        by = "cli"
    try:
        ledger.close_over_month(args.month, now_ns=now_ns(), timezone=cfg.site.timezone, by=by)
    except CloseRefused as err:
        print(f"kartech billing close: {err}", file=sys.stderr)
        return 1
    finally:
        ledger.store.close()
    print(f"{args.month} closed by {by}: its statements are final", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    billing = sub.add_parser("billing", help="usage billing: partners' monthly statements")
    bsub = billing.add_subparsers(dest="billing_command", required=True)
    s = bsub.add_parser("statement", help="a partner's statement for a month (CSV, HTML or PDF)")
    s.add_argument("--config", required=True, help="site YAML file")
    s.add_argument("--partner", required=True, help="partner id (billing.partners)")
    s.add_argument("--month", required=True, help="YYYY-MM, in the site's time zone")
    s.add_argument("--format", choices=FORMATS, default="csv", help="csv (default), html or pdf")
    s.add_argument("--lang", choices=LANGS, default="ru", help="language of HTML and PDF (default ru)")
    s.add_argument("--out", default=None, help="write to this file (default: standard output)")
    s.add_argument("--data-dir", default=None, help="the gateway's data directory (default: storage.data_dir)")
    s.set_defaults(func=cmd_statement)
    u = bsub.add_parser("unattributed", help="usage no attribution rule matched (to assign through the API)")
    u.add_argument("--config", required=True, help="site YAML file")
    u.add_argument("--data-dir", default=None, help="the gateway's data directory (default: storage.data_dir)")
    u.set_defaults(func=cmd_unattributed)
    for name, func, what in (("partners", cmd_partners, "partners"), ("rates", cmd_rates, "rate cards")):
        p = bsub.add_parser(name, help=f"{what} in effect (site file and API changes)")
        psub = p.add_subparsers(dest=f"{name}_command", required=True)
        ls = psub.add_parser("list", help=f"list the {what} in effect now")
        ls.add_argument("--config", required=True, help="site YAML file")
        ls.add_argument("--data-dir", default=None, help="the gateway's data directory (default: storage.data_dir)")
        ls.set_defaults(func=func)
    c = bsub.add_parser("close", help="close a month that is over: its statements are final (audited, once)")
    c.add_argument("--config", required=True, help="site YAML file")
    c.add_argument("--month", required=True, help="YYYY-MM, in the site's time zone")
    c.add_argument("--by", default=None, help="who closes it, kept with the month (default: cli:<user name>)")
    c.add_argument("--data-dir", default=None, help="the gateway's data directory (default: storage.data_dir)")
    c.set_defaults(func=cmd_close)
