"""Exact money: `Decimal` amounts in the site currency, rounded by one rule.

The rounding rule (the only one; every amount on a statement follows it):

    1. Each component of a line (machine time, reserved time, setup fee, minimum-charge top-up, material,
       energy) is computed exactly — quantity x price — and then rounded half-up to the currency's minor unit
       (ISO 4217: KZT, RUB, USD, EUR have 2 decimals; JPY 0; KWD 3).
    2. A line's amount is the sum of its rounded components; subtotals and the statement subtotal are sums of
       rounded line amounts (so the lines always add up to them).
    3. The contract discount is computed on the rounded subtotal and rounded half-up; VAT is computed on the
       rounded net (subtotal - discount) and rounded half-up. With prices that include VAT, the VAT contained
       in the total is total x rate / (100 + rate), rounded half-up.

Machine time is priced on whole billed minutes (the rounding increment), so the exact product
minutes x price-per-hour / 60 is rounded once, by rule 1.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor units of currencies a Central Asian hub plausibly bills in; any other currency has 2
MINOR_UNITS: dict[str, int] = {"KZT": 2, "RUB": 2, "USD": 2, "EUR": 2, "CNY": 2, "KGS": 2, "UZS": 2, "TRY": 2,
                               "GBP": 2, "CHF": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "OMR": 3}
ZERO = Decimal(0)


def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit (ISO 4217)."""
    return MINOR_UNITS.get(currency, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit (rule 1)."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def fmt(amount: Decimal, currency: str) -> str:
    """Fixed formatting for files: plain digits, '.' as the decimal point, always the minor unit's decimals,
    no thousands separators, '-' for negative amounts (e.g. 12500.00, -350.50)."""
    q = round_money(amount, currency)
    return f"{q:f}" if q != 0 else f"{abs(q):f}"


def pct_of(amount: Decimal, pct: Decimal, currency: str) -> Decimal:
    """pct % of amount, rounded (rule 3)."""
    return round_money(amount * pct / Decimal(100), currency)


def vat_included(gross: Decimal, pct: Decimal, currency: str) -> Decimal:
    """The VAT contained in a gross amount at pct % (rule 3)."""
    return round_money(gross * pct / (Decimal(100) + pct), currency)
