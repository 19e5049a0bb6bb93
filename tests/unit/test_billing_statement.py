"""Golden statements of a scripted month (March 2025, Asia/Almaty = UTC+5), every figure computed by hand.

Rate cards (kit.bill.BILLING): printers 1200/h (academic 600/h), per started 15 min, setup 500, minimum 1000,
PLA 25/g at 2.98 g/m; cnc-01 9000/h, per started 15 min, setup 2000, minimum 4500. ACME: industrial, 10 %
discount; VAT 12 % added.
"""

from __future__ import annotations

from decimal import Decimal

from kit.bill import KINDS, at, billing, month_entries

from gateway.billing.ledger import Ledger, assign, correct
from gateway.billing.money import fmt, round_money
from gateway.billing.statement import Statement, build_statement, statement_csv

D = Decimal


def statement(partner: str, month: str, entries: list | None = None, closed: dict[str, int] | None = None,
              text: str | None = None) -> Statement:
    b = billing() if text is None else billing(text)
    return build_statement(month_entries() if entries is None else entries, billing=b, partner=partner,
                           month=month, kinds=KINDS, timezone="Asia/Almaty", currency="KZT", closed=closed)


def amounts(st: Statement) -> list[tuple[str, str, str, str]]:
    return [(ln.machine, ln.job, str(ln.billed_min), fmt(ln.amount, "KZT")) for ln in st.lines]


def test_march_statement_of_acme_by_hand() -> None:
    st = statement("acme", "2025-03")
    assert amounts(st) == [
        # J1 10:00-12:07 = 127 min -> 9 started quarters = 135 min x 1200/60 = 2700.00; setup 500.00;
        #    PLA 10 m x 2.98 = 29.80 g x 25 = 745.00; 2700 >= minimum 1000.          2700 + 500 + 745 = 3945.00
        ("fdm-01", "ACME_bracket.gcode", "135", "3945.00"),
        # J2 23:30-01:10 split at midnight: 30 min -> quarters started before midnight: 2 = 30 min x 9000/60
        #    = 4500.00 + setup 2000.00 = 6500.00
        ("cnc-01", "ACME_shaft", "30", "6500.00"),
        #    after midnight 70 min (cumulative 30 -> 100 min): ceil(100/15) - ceil(30/15) = 7 - 2 = 5 quarters
        #    = 75 min x 150 = 11250.00 (the whole job: 7 quarters = 105 min, never 8)
        ("cnc-01", "ACME_shaft", "75", "11250.00"),
        # J3 5.5 min -> 1 quarter = 2250.00, below the minimum 4500 -> top-up 2250.00, setup 2000.00 = 6500.00
        ("cnc-01", "ACME_pin", "15", "6500.00"),
        # J4 08:00-10:00 with a 3-min gap (< grace 300 s): one session, 117 min running -> 8 quarters = 120 min
        #    x 20 = 2400.00 + setup 500.00 = 2900.00
        ("fdm-01", "ACME_cover.gcode", "120", "2900.00"),
        # J8 09:00-11:30 with a 60-min gap (> grace): segment 0 09:00-10:00 = 4 quarters = 9000.00 + setup
        #    2000.00 = 11000.00; segment 1 11:00-11:30 = 2 quarters = 4500.00 (no second setup fee)
        ("cnc-01", "ACME_long", "60", "11000.00"),
        ("cnc-01", "ACME_long", "30", "4500.00"),
        # J5 22:00-02:00 across the month end: March part 120 min = 8 quarters x 300 = 2400.00 + setup 500.00
        #    + PLA 5 m x 2.98 = 14.90 g x 25 = 372.50 = 3272.50 (the April part is on April's statement)
        ("fdm-01", "ACME_housing.gcode", "120", "3272.50"),
    ]
    # J7 (unattributed) and J6 (partner lab) are not on ACME's statement
    assert [ln.minimum_topup for ln in st.lines if ln.job == "ACME_pin"] == [D("2250.00")]
    assert st.by_machine == (("cnc-01", D("39750.00")), ("fdm-01", D("10117.50")))
    # cnc: 6500 + 11250 + 6500 + 11000 + 4500 = 39750; fdm: 3945 + 2900 + 3272.50 = 10117.50
    assert st.by_project == (("ore", D("43367.50")), ("tools", D("6500.00")))
    assert st.subtotal == D("49867.50")  # 39750 + 10117.50
    assert st.discount == D("4986.75")  # 10 % of 49867.50
    assert st.net == D("44880.75")  # 49867.50 - 4986.75
    assert st.vat == D("5385.69")  # 12 % of 44880.75 = 5385.690
    assert st.total == D("50266.44")  # 44880.75 + 5385.69


def test_april_statement_gets_the_rest_of_the_month_end_job_as_golden_csv() -> None:
    # J5 after midnight: 120 min (cumulative 120 -> 240: 16 - 8 = 8 quarters) x 20 = 2400.00, no setup fee;
    # discount 240.00; net 2160.00; VAT 12 % = 259.20; total 2419.20
    assert statement_csv(statement("acme", "2025-04")) == (
        "row,partner,month,machine,project,job,start,end,duration_min,billed_min,reserved_min,material,"
        "material_qty,energy_kwh,rate_per_hour,time,reserved,setup_fee,minimum_charge,material_amount,energy,"
        "amount,currency,entry,note\n"
        "line,acme,2025-04,fdm-01,ore,ACME_housing.gcode,2025-04-01T00:00:00+05:00,2025-04-01T02:00:00+05:00,"
        "120.00,120,0,,,,1200.00,2400.00,0.00,0.00,0.00,0.00,0.00,2400.00,KZT,fdm-01/1743440400000000000/0,\n"
        "machine,acme,2025-04,fdm-01,,,,,,,,,,,,,,,,,,2400.00,KZT,,\n"
        "project,acme,2025-04,,ore,,,,,,,,,,,,,,,,,2400.00,KZT,,\n"
        "subtotal,acme,2025-04,,,,,,,,,,,,,,,,,,,2400.00,KZT,,\n"
        "discount,acme,2025-04,,,,,,,,,,,,,,,,,,,-240.00,KZT,,contract discount 10%\n"
        "net,acme,2025-04,,,,,,,,,,,,,,,,,,,2160.00,KZT,,\n"
        "vat,acme,2025-04,,,,,,,,,,,,,,,,,,,259.20,KZT,,VAT 12% added\n"
        "total,acme,2025-04,,,,,,,,,,,,,,,,,,,2419.20,KZT,,\n")


def test_academic_tier_price_and_minimum_charge() -> None:
    st = statement("lab", "2025-03")
    # J6 60 min at the academic 600/h = 600.00, below the minimum 1000 -> top-up 400.00, setup 500.00 = 1500.00;
    # no discount; VAT 180.00; total 1680.00
    assert amounts(st) == [("fdm-01", "LAB-tensile.gcode", "60", "1500.00")]
    assert (st.subtotal, st.discount, st.vat, st.total) == (D("1500.00"), D("0.00"), D("180.00"), D("1680.00"))


def test_prices_that_include_vat() -> None:
    from kit.bill import BILLING
    st = statement("acme", "2025-03", text=BILLING.replace("  vat_pct: 12\n", "  vat_pct: 12\n  vat: included\n"))
    # total = net = 44880.75; the VAT in it = 44880.75 x 12 / 112 = 4808.6517... -> 4808.65
    assert (st.net, st.vat, st.total) == (D("44880.75"), D("4808.65"), D("44880.75"))


def test_same_inputs_give_the_same_bytes_whatever_the_entry_order() -> None:
    entries = month_entries()
    a = statement_csv(statement("acme", "2025-03", entries))
    b = statement_csv(statement("acme", "2025-03", list(reversed(entries))))
    assert a == b
    assert a.encode("utf-8") == b.encode("utf-8")
    assert "\r" not in a


def test_a_correction_after_the_month_is_closed_goes_to_the_next_open_month() -> None:
    ledger = Ledger(month_entries())
    pin = next(e for e in ledger.entries() if e.job == "ACME_pin")
    closed = {"2025-03": at("2025-04-02 00:00")}
    # J3 really ran 40 minutes: the correction is recorded on 5 April, after March was closed
    rev, fix = correct(pin, recorded_ns=at("2025-04-05 12:00"), by="admin", note="ran 40 min",
                       running=((at("2025-03-12 14:00"), at("2025-03-12 14:40")),), end_ns=at("2025-03-12 14:40"))
    ledger.add_all([rev, fix])
    march = statement("acme", "2025-03", ledger.entries(), closed)
    assert march.total == D("50266.44")  # unchanged
    april = statement("acme", "2025-04", ledger.entries(), closed)
    # reversal -6500.00 (-2250 time, -2000 setup, -2250 top-up); replacement 40 min -> 3 quarters = 6750.00
    # + setup 2000.00 = 8750.00 (above the minimum); April: 2400 - 6500 + 8750 = 4650.00, discount 465.00,
    # net 4185.00, VAT 502.20, total 4687.20
    assert [(ln.job, fmt(ln.amount, "KZT")) for ln in april.lines] == [
        ("ACME_pin", "-6500.00"), ("ACME_pin", "8750.00"), ("ACME_housing.gcode", "2400.00")]
    assert "billed late" in april.lines[0].note
    assert (april.subtotal, april.discount, april.vat, april.total) == (
        D("4650.00"), D("465.00"), D("502.20"), D("4687.20"))
    # had March still been open, the correction would be in March: 49867.50 - 6500 + 8750 = 52117.50
    assert statement("acme", "2025-03", ledger.entries()).subtotal == D("52117.50")


def test_unattributed_usage_assigned_later_is_billed_and_audited() -> None:
    ledger = Ledger(month_entries())
    [loose] = ledger.unattributed()
    assert loose.job == "random.gcode"
    ledger.add_all(assign(loose, partner="acme", project="ore", recorded_ns=at("2025-03-16 09:00"), by="admin"))
    assert ledger.unattributed() == []
    st = statement("acme", "2025-03", ledger.entries())
    [line] = [ln for ln in st.lines if ln.job == "random.gcode"]
    # 30 min = 2 quarters x 300 = 600.00, below the minimum 1000 -> top-up 400.00; + setup 500.00 = 1500.00
    assert line.amount == D("1500.00")
    assert line.note == "assigned to acme/ore by admin"
    assert st.subtotal == D("51367.50")  # 49867.50 + 1500


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    assert round_money(D("0.125"), "KZT") == D("0.13")  # not banker's 0.12
    assert round_money(D("-0.125"), "KZT") == D("-0.13")
    assert round_money(D("2.5"), "JPY") == D("3")
    assert fmt(D("-0"), "KZT") == "0.00"


def test_unknown_partner_and_bad_month_are_named() -> None:
    import pytest
    with pytest.raises(ValueError, match=r'"acne" is not a known partner \(known: acme, lab\)'):
        statement("acne", "2025-03")
    with pytest.raises(ValueError, match=r"'2025-13' is not a month; write YYYY-MM"):
        statement("acme", "2025-13")
