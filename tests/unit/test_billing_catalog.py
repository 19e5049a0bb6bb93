"""The billing catalog: the site file's partners, projects, users and rate cards with the changes admins made
through the API, in a real business store — merged, validated with check-config's words and locations, audited,
and rate cards valid from a time (statements price each entry with the card in effect at its start; the figures
follow the golden month of test_billing_statement.py)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from kit.bill import BILLING, KINDS, at, config, month_entries
from kit.ops import MACHINES, SPECS, T0

from gateway.billing.catalog import Catalog, Exists, RateInClosedMonth, Refused, UnknownItem
from gateway.billing.documents import statement_of
from gateway.billing.money import fmt
from gateway.billing.persist import LedgerStore
from gateway.billing.statement import Statement, build_statement, statement_csv
from gateway.config.billing import BillingSection
from gateway.config.loader import check_text
from gateway.errors import ConfigError
from gateway.store import Store

SITE_HEAD = "site: {id: krg, name: Test hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "business.sqlite")
    yield s
    s.close()


@pytest.fixture
def catalog(store: Store) -> Catalog:
    return Catalog(store, config())


def now(b: Catalog) -> BillingSection:
    section = b.at(T0)
    assert section is not None
    return section


def refusal(item_yaml: str, section: str) -> str:
    """What check-config says about a site file whose list `billing.<section>` ends with `item_yaml`."""
    lines = BILLING.splitlines(keepends=True)
    i = lines.index(f"  {section}:\n") + 1
    while i < len(lines) and lines[i].startswith("    - "):
        i += 1
    text = SITE_HEAD + "".join([*lines[:i], f"    - {item_yaml}\n", *lines[i:]])
    problems = check_text(text, "site.yaml", SPECS, {}).problems
    assert len(problems) == 1, [str(p) for p in problems]
    return f"{problems[0].where}.{problems[0].key}: {problems[0].message}"


def test_without_changes_the_section_is_the_site_files_with_rate_card_ids(catalog: Catalog) -> None:
    site = config().billing
    assert site is not None
    assert now(catalog).model_dump(exclude={"rates"}) == site.model_dump(exclude={"rates"})
    assert [c.model_dump(exclude={"id"}) for c in now(catalog).rates] == [
        c.model_dump(exclude={"id"}) for c in site.rates]
    assert [c.id for c in now(catalog).rates] == ["rate-1", "rate-2"]  # derived from the position
    assert catalog.changes() == []


def test_added_and_patched_items_are_merged_and_every_change_is_audited(catalog: Catalog, store: Store) -> None:
    catalog.add("partners", {"id": "qarmet", "name": "Qarmet R&D", "tier": "industrial", "discount_pct": 5},
                by="hub-it", now_ns=T0)
    catalog.add("projects", {"id": "slag", "partner": "qarmet", "name": "Slag recycling"}, by="hub-it", now_ns=T0)
    catalog.add("users", {"id": "dana", "name": "Dana K.", "partner": "qarmet", "project": "slag",
                          "badges": ["0A0B0C0D"]}, by="hub-it", now_ns=T0 + 1)
    catalog.patch("partners", "acme", {"tier": "startup", "discount_pct": Decimal("12.5")}, by="boss",
                  now_ns=T0 + 2)
    catalog.patch("users", "aigerim", {"badges": ["04A1B2C3", "FFEE0011"]}, by="boss", now_ns=T0 + 3)
    b = catalog.at(T0 + 3)
    assert b is not None
    assert [(p.id, p.tier, p.discount_pct) for p in b.partners] == [
        ("acme", "startup", Decimal("12.5")), ("lab", "academic", Decimal(0)), ("qarmet", "industrial", Decimal(5))]
    assert [p.id for p in b.projects] == ["ore", "tools", "slag"]
    assert [(u.id, u.badges) for u in b.users] == [("aigerim", ["04A1B2C3", "FFEE0011"]), ("dana", ["0A0B0C0D"])]
    # added items exist from the start; a patch applies from when it was made
    before = catalog.at(T0 + 1)
    assert before is not None
    assert [(p.id, p.tier) for p in before.partners] == [("acme", "industrial"), ("lab", "academic"),
                                                         ("qarmet", "industrial")]
    assert [p.id for p in catalog.at(0).partners] == ["acme", "lab", "qarmet"]  # type: ignore[union-attr]
    # the audit: who, when, what was given, before and after
    changes = catalog.changes()
    assert [(c.id, c.by, c.recorded_ns - T0, c.list, c.item, c.op) for c in changes] == [
        (1, "hub-it", 0, "partners", "qarmet", "add"), (2, "hub-it", 0, "projects", "slag", "add"),
        (3, "hub-it", 1, "users", "dana", "add"), (4, "boss", 2, "partners", "acme", "patch"),
        (5, "boss", 3, "users", "aigerim", "patch")]
    patch = changes[3]
    assert (patch.valid_from_ns, patch.fields) == (T0 + 2, {"tier": "startup", "discount_pct": "12.5"})
    assert patch.before == {"id": "acme", "name": "ACME Mining R&D", "tier": "industrial", "discount_pct": "10"}
    assert patch.after == {"id": "acme", "name": "ACME Mining R&D", "tier": "startup", "discount_pct": "12.5"}
    assert (changes[0].valid_from_ns, changes[0].before) == (0, None)
    # a restart reads the same
    again = Catalog(store, config())
    assert again.changes() == changes
    assert again.at(T0 + 3) == b


def test_a_change_check_config_would_refuse_is_refused_with_its_words_and_location(catalog: Catalog) -> None:
    cases = [
        ("partners", {"id": "x", "name": "X", "tier": "gold"}, "{id: x, name: X, tier: gold}"),
        ("partners", {"id": "y", "name": "Y", "tier": "startup", "discount_pct": 150},
         "{id: y, name: Y, tier: startup, discount_pct: 150}"),
        ("projects", {"id": "p", "partner": "acmee", "name": "P"}, "{id: p, partner: acmee, name: P}"),
        ("users", {"id": "u", "name": "U", "partner": "lab", "badges": ["04A1B2C3"]},
         "{id: u, name: U, partner: lab, badges: ['04A1B2C3']}"),
        ("users", {"id": "v", "name": "V", "partner": "lab", "project": "ore"},
         "{id: v, name: V, partner: lab, project: ore}"),
    ]
    for list_, item, yaml_item in cases:
        with pytest.raises(Refused) as err:
            catalog.add(list_, item, by="hub-it", now_ns=T0)  # type: ignore[arg-type]
        assert err.value.problems == [refusal(yaml_item, list_)]
    with pytest.raises(Refused) as err:
        catalog.add("rates", {"kinds": ["printr"], "per_running_hour": Decimal(-1)}, by="hub-it", now_ns=T0)
    assert err.value.problems == [
        "billing.rates[2].per_running_hour: -1 is out of range: input should be greater than or equal to 0"]
    with pytest.raises(Refused) as err:
        catalog.add("rates", {"kinds": ["printr"], "per_running_hour": 1}, by="hub-it", now_ns=T0)
    assert err.value.problems == ['billing.rates[2].kinds[0]: "printr" is not a known machine kind; did you mean '
                                  '"printer"? (known: cnc, furnace, laser, printer)']
    with pytest.raises(Refused) as err:
        catalog.patch("rates", "rate-2", {"machines": [], "kinds": []}, by="hub-it", now_ns=T0)
    assert err.value.problems == ["billing.rates[1]: needs machines or kinds it applies to"]
    with pytest.raises(Refused, match='this changes nothing; partner "lab" has these values'):
        catalog.patch("partners", "lab", {"tier": "academic"}, by="hub-it", now_ns=T0)
    with pytest.raises(Exists, match='partner "acme" exists already; change it with PATCH /api/v1/partners/acme'):
        catalog.add("partners", {"id": "acme", "name": "A", "tier": "startup"}, by="hub-it", now_ns=T0)
    with pytest.raises(UnknownItem, match=r'no rate card "rate-9" \(known: rate-1, rate-2\)'):
        catalog.patch("rates", "rate-9", {"setup_fee": 1}, by="hub-it", now_ns=T0)
    assert catalog.changes() == []  # nothing refused was recorded
    assert now(catalog) == Catalog(catalog.store, config()).at(T0)


def test_rate_cards_are_named_by_id_or_index_and_added_ones_get_the_next_free_id(catalog: Catalog) -> None:
    catalog.patch("rates", "1", {"setup_fee": 2500}, by="hub-it", now_ns=T0)
    assert catalog.changes()[0].item == "rate-2"
    ch = catalog.add("rates", {"machines": ["plug-01"], "per_running_hour": 3000}, by="hub-it", now_ns=T0)
    assert (ch.item, ch.after["id"], ch.valid_from_ns) == ("rate-3", "rate-3", T0)
    ch = catalog.add("rates", {"id": "furnaces", "kinds": ["furnace"], "per_running_hour": 800}, by="hub-it",
                     now_ns=T0)
    assert [c.id for c in now(catalog).rates] == ["rate-1", "rate-2", "rate-3", "furnaces"]
    assert catalog.since(T0) == {"rate-2": T0, "rate-3": T0, "furnaces": T0}


def priced(st: Statement) -> list[tuple[str, str, str]]:
    return [(ln.job, fmt(ln.rate or Decimal(0), "KZT"), fmt(ln.amount, "KZT")) for ln in st.lines
            if ln.machine == "fdm-01"]


def test_statements_price_each_entry_with_the_card_in_effect_at_its_start(catalog: Catalog, store: Store) -> None:
    ledger = LedgerStore(store)
    ledger.add(month_entries())
    cfg = config()
    golden_march = statement_csv(statement_of(cfg, ledger, "acme", "2025-03"))
    golden_april = statement_csv(statement_of(cfg, ledger, "acme", "2025-04"))
    # from 2025-04-01 00:00: no entry of March starts later, so both months are unchanged — the April part of the
    # month-end job (started on March 31) keeps March's price
    catalog.patch("rates", "rate-1", {"per_running_hour": 3600}, by="hub-it", now_ns=T0,
                  valid_from_ns=at("2025-04-01 00:00"))
    assert statement_csv(statement_of(cfg, ledger, "acme", "2025-03", catalog.at)) == golden_march
    assert statement_csv(statement_of(cfg, ledger, "acme", "2025-04", catalog.at)) == golden_april
    # from 2025-03-20 00:00, printers cost 2400/h: J1 (March 3) keeps 1200/h; J4 (March 20) 120 min x 40 = 4800
    # + setup 500 = 5300.00; J5 (March 31, across the month end) 120 min x 40 = 4800 + 500 + PLA 372.50 =
    # 5672.50 in March, and its April part 4800.00 — priced by the entry's start, not by the part's month
    catalog.patch("rates", "rate-1", {"per_running_hour": 2400}, by="hub-it", now_ns=T0,
                  valid_from_ns=at("2025-03-20 00:00"))
    march = statement_of(cfg, ledger, "acme", "2025-03", catalog.at)
    assert priced(march) == [("ACME_bracket.gcode", "1200.00", "3945.00"), ("ACME_cover.gcode", "2400.00", "5300.00"),
                             ("ACME_housing.gcode", "2400.00", "5672.50")]
    assert march.subtotal == Decimal("49867.50") + Decimal("2400.00") + Decimal("2400.00")
    assert priced(statement_of(cfg, ledger, "acme", "2025-04", catalog.at)) == [
        ("ACME_housing.gcode", "2400.00", "4800.00")]
    # build_statement with the timeline is the same as with each entry's own section
    b = catalog.at(at("2025-03-31 23:59"))
    assert b is not None
    assert build_statement(month_entries(), billing=b, partner="acme", month="2025-03", kinds=KINDS,
                           timezone="Asia/Almaty", currency="KZT", billing_at=lambda ts: catalog.at(ts) or b
                           ) == march


def test_a_partner_patch_changes_statements_from_the_month_it_is_made_in(catalog: Catalog, store: Store) -> None:
    ledger = LedgerStore(store)
    ledger.add(month_entries())
    cfg = config()
    before = statement_of(cfg, ledger, "acme", "2025-03", catalog.at)
    catalog.patch("partners", "acme", {"discount_pct": 50}, by="hub-it", now_ns=at("2025-04-10 12:00"))
    assert statement_of(cfg, ledger, "acme", "2025-03", catalog.at) == before  # the month was over
    april = statement_of(cfg, ledger, "acme", "2025-04", catalog.at)
    assert (april.discount_pct, april.discount) == (Decimal(50), Decimal("1200.00"))


def test_no_change_takes_effect_inside_or_before_a_closed_month(catalog: Catalog, store: Store) -> None:
    ledger = LedgerStore(store)
    ledger.add(month_entries())
    ledger.close_over_month("2025-03", now_ns=at("2025-04-02 09:00"), timezone="Asia/Almaty", by="hub-it")
    closed = statement_csv(statement_of(config(), ledger, "acme", "2025-03", catalog.at))
    for when in ("2025-03-20 00:00", "2025-02-01 00:00", "2025-03-31 23:59:59"):
        with pytest.raises(RateInClosedMonth) as err:
            catalog.patch("rates", "rate-1", {"per_running_hour": 2400}, by="hub-it", now_ns=T0,
                          valid_from_ns=at(when))
    assert str(err.value) == (
        "valid_from 2025-03-31T18:59:59.000Z is not after the closed month 2025-03 (closed at "
        "2025-04-02T04:00:00.000Z by hub-it); a change takes effect at the earliest at 2025-03-31T19:00:00.000Z, "
        "the end of the last closed month, so that closed months keep their statements")
    with pytest.raises(RateInClosedMonth):
        catalog.add("rates", {"kinds": ["printer"], "per_running_hour": 1}, by="hub-it", now_ns=T0,
                    valid_from_ns=at("2025-03-01 00:00"))
    assert catalog.changes() == []
    catalog.patch("rates", "rate-1", {"per_running_hour": 2400}, by="hub-it", now_ns=T0,
                  valid_from_ns=at("2025-04-01 00:00"))  # the first moment after the closed month
    catalog.patch("partners", "acme", {"discount_pct": 50}, by="hub-it", now_ns=T0)
    assert statement_csv(statement_of(config(), ledger, "acme", "2025-03", catalog.at)) == closed


def test_a_patch_before_the_cards_own_start_is_refused(catalog: Catalog) -> None:
    catalog.add("rates", {"id": "lasers", "kinds": ["laser"], "per_running_hour": 5000}, by="hub-it", now_ns=T0,
                valid_from_ns=at("2025-06-01 00:00"))
    assert [c.id for c in catalog.at(at("2025-05-31 23:59")).rates] == ["rate-1", "rate-2"]  # type: ignore[union-attr]
    with pytest.raises(UnknownItem, match='no rate card "lasers"'):
        catalog.patch("rates", "lasers", {"per_running_hour": 1}, by="hub-it", now_ns=T0,
                      valid_from_ns=at("2025-05-01 00:00"))
    catalog.patch("rates", "lasers", {"per_running_hour": 4000}, by="hub-it", now_ns=T0,
                  valid_from_ns=at("2025-07-01 00:00"))
    assert [c.per_running_hour for c in catalog.at(at("2025-07-01 00:00")).rates][-1] == 4000  # type: ignore[union-attr]


def test_changes_that_no_longer_fit_the_site_file_stop_the_gateway_with_why(catalog: Catalog, store: Store) -> None:
    catalog.patch("partners", "lab", {"name": "Materials lab (KarTU)"}, by="hub-it", now_ns=T0)
    without_lab = BILLING.replace("    - {id: lab, name: Materials lab, tier: academic}\n", "").replace(
        '    - {regex: "^LAB-", partner: lab}\n', "")
    with pytest.raises(ConfigError, match='no partner "lab" at the time change 1 takes effect'):
        Catalog(store, config(without_lab))
