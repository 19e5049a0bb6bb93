"""A partner's monthly statement as a document: built from the business store's ledger and the site file, and
written as CSV (accounting import), HTML (self-contained, printable) or PDF, in Russian or English.

The CLI (`kartech billing statement`) and the API (`GET /api/v1/billing/statements/...`) both call `statement_of`
and `render`; amounts in every format are the CSV's, digit for digit (money.fmt).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.billing.html import statement_html
from gateway.billing.pdf import statement_pdf
from gateway.billing.periods import month_span, parse_month
from gateway.billing.persist import LedgerStore
from gateway.billing.statement import Statement, build_statement, statement_csv
from gateway.billing.view import Lang, StatementError, StatementView
from gateway.config.billing import BillingSection
from gateway.config.site import SiteConfig

Format = Literal["csv", "html", "pdf"]
FORMATS: tuple[Format, ...] = ("csv", "html", "pdf")
LANGS: tuple[Lang, ...] = ("ru", "kk", "en")
MEDIA_TYPES: dict[Format, str] = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8",
                                  "pdf": "application/pdf"}


@dataclass(frozen=True, slots=True)
class Document:
    content: bytes
    media_type: str
    filename: str


def statement_of(cfg: SiteConfig, ledger: LedgerStore, partner: str, month: str,
                 billing_at: Callable[[int], BillingSection | None] | None = None) -> Statement:
    """The statement of `partner` for `month` (YYYY-MM, site time zone) from the ledger in the business store.
    With `billing_at` (Catalog.at: the section in effect at a time) the partner, its tier and discount are those
    in effect at the month's end, and each entry is priced with the rate cards in effect at its start."""
    try:
        year, _ = parse_month(month)
    except ValueError as err:
        raise StatementError(str(err)) from None
    if not 1970 <= year <= 2199:  # times are 64-bit nanoseconds, which end in 2262
        raise StatementError(f"{month!r} is out of range; a month from 1970-01 to 2199-12")
    _, end_ns = month_span(month, zoneinfo.ZoneInfo(cfg.site.timezone))
    b = cfg.billing if billing_at is None else billing_at(end_ns - 1)
    if b is None:
        raise StatementError("the site file has no billing section: add billing: with partners and rate cards "
                             "(see README, Billing)")
    if partner not in {p.id for p in b.partners}:
        known = ", ".join(sorted(p.id for p in b.partners)) or "none"
        raise StatementError(f'"{partner}" is not a partner of this site (billing.partners: {known})')
    # entries of earlier months may be billed in this one (recorded after their month was closed)
    entries = ledger.entries(partner=partner, end_ns=end_ns)
    month_billing = b
    return build_statement(entries, billing=b, partner=partner, month=month,
                           kinds={m.id: m.kind for m in cfg.machines}, timezone=cfg.site.timezone,
                           currency=cfg.site.currency, closed=ledger.closed(),
                           billing_at=None if billing_at is None else lambda ts: billing_at(ts) or month_billing)


def render(st: Statement, fmt_: Format, lang: Lang, *, site_name: str,
           machine_names: dict[str, str] | None = None) -> Document:
    name = f"statement-{st.partner}-{st.month}"
    if fmt_ == "csv":
        return Document(statement_csv(st).encode(), MEDIA_TYPES["csv"], f"{name}.csv")
    view = StatementView(st, lang, site_name, machine_names or {})
    if fmt_ == "html":
        return Document(statement_html(view).encode(), MEDIA_TYPES["html"], f"{name}.html")
    return Document(statement_pdf(view), MEDIA_TYPES["pdf"], f"{name}.pdf")
