"""`kartech billing ...`: a partner's monthly statement, and the usage no rule attributed, from the business store
of a site's data directory (read only; the gateway may be running)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.billing.documents import FORMATS, LANGS, render, statement_of
from gateway.billing.persist import LedgerStore
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
            st = statement_of(cfg, ledger, args.partner, args.month)
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
