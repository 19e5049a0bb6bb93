"""The billing: section as check-config reports it: exact text, with the file's line."""

from __future__ import annotations

from kit.bill import BILLING, config
from kit.ops import MACHINES, SPECS

from gateway.config.loader import check_text
from gateway.config.references import cross_checks

HEAD = "site: {id: krg, name: Test hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES


def problems(tail: str) -> list[str]:
    return [str(p) for p in check_text(HEAD + tail, "site.yaml", SPECS, {}).problems]


def test_the_example_billing_section_is_valid_and_optional() -> None:
    cfg = config()
    assert cfg.billing is not None
    assert cross_checks(cfg) == []
    assert cfg.billing.rates[0].tiers["academic"].per_running_hour == 600
    assert config("").billing is None


def test_cross_references_name_the_unknown_and_the_known() -> None:
    assert problems("""\
billing:
  vat_pct: 12
  partners:
    - {id: acme, name: ACME, tier: industrial}
    - {id: acme, name: ACME again, tier: startup}
  projects:
    - {id: ore, partner: acmee, name: Ore}
    - {id: own, partner: acme, name: Own}
  users:
    - {id: u1, name: U, partner: lab}
  attribution:
    - {prefix: X_, partner: acme, project: nope}
    - {prefix: Y_, partner: lab, machines: [fdm-1]}
  materials:
    - {id: pla, name: PLA, per_unit: 1}
  rates:
    - {machines: [cnc-1], kinds: [printers], per_running_hour: 100, material: abs}
""") == [
        'site.yaml:16 — billing\n  partners[1].id: "acme" is already used by partners[0]; partner ids must be '
        "unique",
        'site.yaml:18 — billing\n  projects[0].partner: "acmee" is not a known partner; did you mean "acme"? '
        "(known: acme)",
        'site.yaml:21 — billing\n  users[0].partner: "lab" is not a known partner; (known: acme)',
        'site.yaml:23 — billing\n  attribution[0].project: "nope" is not a known project; (known: ore, own)',
        'site.yaml:24 — billing\n  attribution[1].partner: "lab" is not a known partner; (known: acme)',
        'site.yaml:24 — billing\n  attribution[1].machines[0]: "fdm-1" is not a known machine; did you mean '
        '"fdm-01"? (known: cnc-01, fdm-01, furnace-01, plug-01)',
        'site.yaml:28 — billing\n  rates[0].machines[0]: "cnc-1" is not a known machine; did you mean "cnc-01"? '
        "(known: cnc-01, fdm-01, furnace-01, plug-01)",
        'site.yaml:28 — billing\n  rates[0].kinds[0]: "printers" is not a known machine kind; did you mean '
        '"printer"? (known: cnc, furnace, laser, printer)',
        'site.yaml:28 — billing\n  rates[0].material: "abs" is not a known material; (known: pla)',
    ]


def test_a_project_of_another_partner_is_refused() -> None:
    text = BILLING.replace("{prefix: ACME_pin, partner: acme, project: tools}",
                           "{prefix: ACME_pin, partner: lab, project: tools}")
    assert problems(text) == [
        'site.yaml:24 — billing\n  attribution[0].project: "tools" is a project of partner "acme", not of "lab"']


def test_model_errors_have_lines_and_hints() -> None:
    assert problems("""\
billing:
  partners:
    - {id: acme, name: ACME, tier: industrail, discount_pct: 120}
  attribution:
    - {regex: "ACME_(", partner: acme}
    - {partner: acme}
  materials:
    - {id: pla, name: PLA, per_gram: 25}
  rates:
    - {per_running_hour: 100}
""") == [
        "site.yaml:12 — billing\n  vat_pct: is required — VAT rate in percent (configuration, never a constant: "
        "rates change by law).",
        'site.yaml:14 — billing\n  partners[0].tier: "industrail" is not allowed; use one of academic, startup, '
        'industrial; did you mean "industrial"?',
        "site.yaml:14 — billing\n  partners[0].discount_pct: 120 is out of range: input should be less than or "
        "equal to 100",
        'site.yaml:16 — billing\n  attribution[0].regex: "ACME_(" is not a valid regular expression (missing ), '
        "unterminated subpattern at position 5); e.g. ^ACME_",
        "site.yaml:17 — billing\n  attribution[1]: needs exactly one of prefix or regex, e.g. prefix: ACME_",
        "site.yaml:19 — billing\n  materials[0]: is priced per gram, so it needs grams_per_metre (printers report "
        "filament in metres), e.g. grams_per_metre: 2.98",
        "site.yaml:21 — billing\n  rates[0]: needs machines or kinds it applies to",
    ]


def test_rate_cards_have_ids_of_their_own_or_from_their_position_and_unique() -> None:
    from gateway.config.billing import rate_id

    b = config().billing
    assert b is not None
    assert [rate_id(i, c) for i, c in enumerate(b.rates)] == ["rate-1", "rate-2"]
    named = BILLING.replace("    - kinds: [printer]\n", "    - kinds: [printer]\n      id: printers\n")
    b = config(named).billing
    assert b is not None
    assert [rate_id(i, c) for i, c in enumerate(b.rates)] == ["printers", "rate-2"]
    clash = BILLING.replace("    - kinds: [printer]\n", "    - kinds: [printer]\n      id: rate-2\n")
    line = (HEAD + clash).splitlines().index("    - machines: [cnc-01]") + 1
    assert problems(clash) == [f'site.yaml:{line} — billing\n  rates[1].id: "rate-2" is already used by rates[0]; '
                               "rate card ids must be unique"]
    upper = BILLING.replace("    - kinds: [printer]\n", "    - kinds: [printer]\n      id: Printers\n")
    line = (HEAD + upper).splitlines().index("      id: Printers") + 1
    assert problems(upper) == [
        f"site.yaml:{line} — billing\n  rates[0].id: \"Printers\" is not valid here; use lower-case letters, "
        "digits, '-' and '_' (e.g. fdm-03)"]
