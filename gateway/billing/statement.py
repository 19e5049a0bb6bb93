"""A partner's statement for one calendar month in the site's time zone, and its CSV.

Pricing of one ledger entry (a session of a job), in the order a partner can check it:

1. Its running (and reserved) time is cut at local midnight into parts, one line per local day; a part belongs
   to the month of its day (so a session crossing a month end is split between the months, durations conserved).
2. Time is billed per started increment of the rate card (`increment_min`), counted from the session's start:
   a part bills the increments that started in it, so the parts of a session add up to exactly the increments
   of the whole session (crossing midnight never bills an increment twice). Amount = billed minutes x price per
   hour / 60, rounded (money.py rule 1). Reserved time likewise at the reserved-hour price.
3. Per-job amounts go on the first part of the job's first session (segment 0): the setup fee, and the top-up
   to the minimum charge when the session's machine time (the sum of its parts' time amounts) is below it.
   Material (grams rounded to 0.01 g, or pieces) and energy go on the session's first part.
4. Subtotals per machine and per project, the subtotal (the sum of the lines), the contract discount on the
   subtotal, VAT on the net (added) or contained in it (included), and the total (money.py rules 2 and 3).

An entry whose month was closed before it was recorded is billed in the next open month (periods.billed_month);
its line keeps its own dates and says so in the note. When rate cards change over time, each entry is priced with
the cards in effect at its start (`billing_at`), whatever month its parts fall in. Reversals (sign -1) appear as
negative lines. Lines are ordered by start, machine, when the entry was recorded, reversals before replacements.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from gateway.billing.ledger import LedgerEntry
from gateway.billing.money import ZERO, fmt, pct_of, round_money, vat_included
from gateway.billing.periods import NS, billed_month, local, parse_month, split_days
from gateway.billing.rates import Prices, material, prices_for
from gateway.config.billing import BillingSection, Tier

MINUTE_NS = 60 * NS
CSV_COLUMNS = ("row", "partner", "month", "machine", "project", "job", "start", "end", "duration_min",
               "billed_min", "reserved_min", "material", "material_qty", "energy_kwh", "rate_per_hour", "time",
               "reserved", "setup_fee", "minimum_charge", "material_amount", "energy", "amount", "currency",
               "entry", "note")


@dataclass(frozen=True, slots=True)
class Line:
    entry: str
    part: int
    month: str  # the month the line is billed in
    machine: str
    project: str | None
    job: str
    day: date
    start_ns: int
    end_ns: int
    running_ns: int
    reserved_ns: int
    billed_min: int
    reserved_billed_min: int
    material: str
    material_qty: str
    energy_kwh: Decimal
    rate: Decimal | None
    time: Decimal
    reserved: Decimal
    setup_fee: Decimal
    minimum_topup: Decimal
    material_amount: Decimal
    energy: Decimal
    amount: Decimal
    sign: int
    note: str


@dataclass(frozen=True, slots=True)
class Statement:
    partner: str
    partner_name: str
    tier: Tier
    month: str
    currency: str
    timezone: str
    lines: tuple[Line, ...]
    by_machine: tuple[tuple[str, Decimal], ...]
    by_project: tuple[tuple[str, Decimal], ...]
    subtotal: Decimal
    discount_pct: Decimal
    discount: Decimal
    net: Decimal
    vat_pct: Decimal
    vat_mode: str
    vat: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class _Part:
    day: date
    start_ns: int
    end_ns: int
    running_ns: int
    reserved_ns: int
    billed_min: int
    reserved_billed_min: int
    time: Decimal
    reserved: Decimal


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _material(entry: LedgerEntry, billing: BillingSection, prices: Prices | None,
              currency: str) -> tuple[str, str, Decimal, str]:
    """(material name, quantity as printed, amount, note) of a session."""
    mid = entry.material or (prices.material if prices else None)
    m = material(billing, mid)
    if m is None:
        if entry.material_m or entry.material_g or entry.units:
            qty = f"{entry.material_g:f} g" if entry.material_g else f"{entry.units:f} pcs" if entry.units \
                else f"{entry.material_m:f} m"
            return mid or "", qty, ZERO, "material without a price"
        return "", "", ZERO, ""
    if m.per_gram is not None:
        grams = (entry.material_g + entry.material_m * (m.grams_per_metre or ZERO)).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)
        if not grams:
            return "", "", ZERO, ""
        return m.name, f"{grams:f} g", round_money(grams * m.per_gram, currency), ""
    if not entry.units:
        return "", "", ZERO, ""
    return m.name, f"{entry.units:f} pcs", round_money(entry.units * (m.per_unit or ZERO), currency), ""


def price_entry(entry: LedgerEntry, *, billing: BillingSection, kind: str, tier: Tier, timezone: str,
                currency: str, closed: Mapping[str, int] | None = None) -> list[Line]:
    """Every line (part) of one ledger entry, priced for a partner tier, each with the month it is billed in."""
    tz = zoneinfo.ZoneInfo(timezone)
    closed = closed or {}
    prices = prices_for(billing, entry.machine, kind, tier)
    run_days = split_days(entry.running, tz)
    res_days = split_days(entry.reserved, tz)
    days = sorted(set(run_days) | set(res_days)) or [local(entry.start_ns, tz).date()]
    inc_min = prices.increment_min if prices else 1
    inc_ns = inc_min * MINUTE_NS
    rate = prices.per_running_hour if prices else None
    rrate = prices.per_reserved_hour if prices else None
    parts: list[_Part] = []
    cum_run = cum_res = 0
    for day in days:
        run = run_days.get(day, [])
        res = res_days.get(day, [])
        r = sum(e - s for s, e in run)
        q = sum(e - s for s, e in res)
        billed = (_ceil_div(cum_run + r, inc_ns) - _ceil_div(cum_run, inc_ns)) * inc_min
        rbilled = (_ceil_div(cum_res + q, inc_ns) - _ceil_div(cum_res, inc_ns)) * inc_min if rrate is not None \
            else 0
        cum_run += r
        cum_res += q
        spans = run + res
        parts.append(_Part(
            day, min(s for s, _ in spans) if spans else entry.start_ns,
            max(e for _, e in spans) if spans else entry.end_ns, r, q, billed, rbilled,
            round_money(Decimal(billed) * rate / 60, currency) if rate is not None else ZERO,
            round_money(Decimal(rbilled) * rrate / 60, currency) if rrate is not None else ZERO))
    time_total = sum((p.time + p.reserved for p in parts), ZERO)
    first_of_job = entry.segment == 0
    setup = prices.setup_fee if prices and first_of_job else ZERO
    topup = max(ZERO, prices.minimum_charge - time_total) if prices and first_of_job else ZERO
    mname, mqty, mamount, mnote = _material(entry, billing, prices, currency)
    energy = round_money(entry.energy_kwh * prices.per_kwh, currency) if prices and prices.per_kwh is not None \
        else ZERO
    sign = entry.sign
    out: list[Line] = []
    for k, p in enumerate(parts):
        own = f"{p.day.year:04d}-{p.day.month:02d}"
        month = billed_month(own, entry.recorded_ns, closed)
        first = k == 0
        t, rv, su, mi, ma, en = (a * sign for a in (
            p.time, p.reserved, setup if first else ZERO, topup if first else ZERO, mamount if first else ZERO,
            energy if first else ZERO))
        notes = [n for n in (
            "no rate card" if prices is None else "",
            mnote if first else "",
            f"usage of {own}, billed late (month closed)" if month != own else "",
            f"reversal of {entry.reverses}" if entry.reverses else "",
            entry.note if entry.source in ("correction", "assignment") and entry.sign > 0 else "",
        ) if n]
        out.append(Line(
            entry=entry.key, part=k, month=month, machine=entry.machine, project=entry.project, job=entry.job,
            day=p.day, start_ns=p.start_ns, end_ns=p.end_ns, running_ns=p.running_ns * sign,
            reserved_ns=p.reserved_ns * sign, billed_min=p.billed_min * sign,
            reserved_billed_min=p.reserved_billed_min * sign, material=mname if first else "",
            material_qty=mqty if first else "", energy_kwh=entry.energy_kwh * sign if first else ZERO, rate=rate,
            time=t, reserved=rv, setup_fee=su, minimum_topup=mi, material_amount=ma, energy=en,
            amount=t + rv + su + mi + ma + en, sign=sign, note="; ".join(notes)))
    return out


def build_statement(entries: Iterable[LedgerEntry], *, billing: BillingSection, partner: str, month: str,
                    kinds: Mapping[str, str], timezone: str, currency: str,
                    closed: Mapping[str, int] | None = None,
                    billing_at: Callable[[int], BillingSection] | None = None) -> Statement:
    """The statement of `partner` for `month` (YYYY-MM) from ledger entries (any entries: those of other
    partners and other months are left out). `kinds` maps machine ids to their kinds (for kind rate cards);
    `closed` maps closed months to when they were closed (UTC ns). `billing` gives the partner, its tier and
    discount, and VAT; each entry is priced with the rate cards and materials of `billing_at(entry start)` when
    rate cards change over time (billing/catalog.py), else with `billing`'s."""
    parse_month(month)
    try:
        p = billing.partner(partner)
    except KeyError:
        raise ValueError(f'"{partner}" is not a known partner (known: '
                         f'{", ".join(sorted(x.id for x in billing.partners)) or "none"})') from None
    lines: list[tuple[tuple[int, str, int, int, str, int], Line]] = []
    for e in entries:
        if e.partner != partner:
            continue
        priced = price_entry(e, billing=billing_at(e.start_ns) if billing_at else billing,
                             kind=kinds.get(e.machine, ""), tier=p.tier, timezone=timezone, currency=currency,
                             closed=closed)
        lines += [((ln.start_ns, ln.machine, e.recorded_ns, e.sign, e.key, ln.part), ln) for ln in priced
                  if ln.month == month]
    ordered = [ln for _, ln in sorted(lines, key=lambda x: x[0])]
    by_machine: dict[str, Decimal] = {}
    by_project: dict[str, Decimal] = {}
    for ln in ordered:
        by_machine[ln.machine] = by_machine.get(ln.machine, ZERO) + ln.amount
        by_project[ln.project or ""] = by_project.get(ln.project or "", ZERO) + ln.amount
    subtotal = sum((ln.amount for ln in ordered), ZERO)
    discount = pct_of(subtotal, p.discount_pct, currency)
    net = subtotal - discount
    if billing.vat == "added":
        vat = pct_of(net, billing.vat_pct, currency)
        total = net + vat
    else:
        vat = vat_included(net, billing.vat_pct, currency)
        total = net
    return Statement(partner=p.id, partner_name=p.name, tier=p.tier, month=month, currency=currency,
                     timezone=timezone, lines=tuple(ordered), by_machine=tuple(sorted(by_machine.items())),
                     by_project=tuple(sorted(by_project.items())), subtotal=subtotal, discount_pct=p.discount_pct,
                     discount=discount, net=net, vat_pct=billing.vat_pct, vat_mode=billing.vat, vat=vat,
                     total=total)


def _minutes(ns: int) -> str:
    return f"{(Decimal(ns) / MINUTE_NS).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"


def _pct(p: Decimal) -> str:
    return f"{p.normalize():f}%"


def statement_csv(st: Statement) -> str:
    """The statement as CSV for accounting import: UTF-8 text, '\\n' line ends, the columns of CSV_COLUMNS in
    that order, amounts with the currency's decimals, times in the site's time zone (ISO 8601 with offset),
    durations in minutes with 2 decimals. The same statement always gives the same bytes."""
    tz = zoneinfo.ZoneInfo(st.timezone)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    cur = st.currency

    def money(v: Decimal) -> str:
        return fmt(v, cur)

    def row(kind: str, **values: str) -> None:
        base = {"row": kind, "partner": st.partner, "month": st.month, "currency": cur}
        base.update(values)
        w.writerow([base.get(c, "") for c in CSV_COLUMNS])

    for ln in st.lines:
        row("line", machine=ln.machine, project=ln.project or "", job=ln.job,
            start=local(ln.start_ns, tz).isoformat(timespec="seconds"),
            end=local(ln.end_ns, tz).isoformat(timespec="seconds"), duration_min=_minutes(ln.running_ns),
            billed_min=str(ln.billed_min), reserved_min=str(ln.reserved_billed_min), material=ln.material,
            material_qty=ln.material_qty, energy_kwh=f"{ln.energy_kwh:f}" if ln.energy_kwh else "",
            rate_per_hour=money(ln.rate) if ln.rate is not None else "", time=money(ln.time),
            reserved=money(ln.reserved), setup_fee=money(ln.setup_fee), minimum_charge=money(ln.minimum_topup),
            material_amount=money(ln.material_amount), energy=money(ln.energy), amount=money(ln.amount),
            entry=ln.entry, note=ln.note)
    for machine, amount in st.by_machine:
        row("machine", machine=machine, amount=money(amount))
    for project, amount in st.by_project:
        row("project", project=project, amount=money(amount), note="" if project else "no project")
    row("subtotal", amount=money(st.subtotal))
    row("discount", amount=money(-st.discount), note=f"contract discount {_pct(st.discount_pct)}")
    row("net", amount=money(st.net))
    row("vat", amount=money(st.vat), note=f"VAT {_pct(st.vat_pct)} {st.vat_mode}")
    row("total", amount=money(st.total))
    return buf.getvalue()
