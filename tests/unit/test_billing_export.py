"""The `usage` points of the usage ledger (gateway/billing/export.py): partner and project tags, signed numbers
so that an assignment moves usage from `unattributed` to the partner, jobs counted once per job."""

from __future__ import annotations

import zoneinfo

from kit.bill import month_entries

from gateway.billing.export import usage_line
from gateway.billing.ledger import assign
from gateway.machines import MachineMeta

TZ = zoneinfo.ZoneInfo("Asia/Almaty")
META = {"fdm-01": MachineMeta("fdm-01", "Printer 1", "printer", "mqtt", "krg", "printfarm"),
        "cnc-01": MachineMeta("cnc-01", "CNC 1", "cnc", "opcua", "krg", "shop")}


def test_an_attributed_entry_is_a_point_with_partner_and_project() -> None:
    entry = next(e for e in month_entries() if e.job == "ACME_bracket.gcode")
    assert usage_line(entry, META["fdm-01"], "krg", TZ) == (
        "usage,kind=printer,lab=printfarm,machine=fdm-01,month=2025-03,partner=acme,project=ore,site=krg,"
        'source=events running_s=7620.0,reserved_s=0.0,material_used=10.0,material_unit="m",energy_kwh=0.0,'
        'jobs=1i,sign=1i,'
        f'job="ACME_bracket.gcode",entry="{entry.key}" {entry.end_ns}')


def test_later_sessions_of_a_job_do_not_count_it_again() -> None:
    first, second = (e for e in month_entries() if e.job == "ACME_long")
    assert "jobs=1i" in usage_line(first, META["cnc-01"], "krg", TZ)
    assert ",jobs=0i," in usage_line(second, META["cnc-01"], "krg", TZ)
    assert ",project=ore," in usage_line(second, META["cnc-01"], "krg", TZ)


def test_an_assignment_moves_the_usage_from_unattributed_to_the_partner() -> None:
    entry = next(e for e in month_entries() if e.partner is None)
    original = usage_line(entry, META["fdm-01"], "krg", TZ)
    assert ",partner=unattributed,site=krg,source=events running_s=1800.0," in original
    assert ",project=" not in original
    rev, fixed = assign(entry, partner="lab", project=None, recorded_ns=entry.end_ns + 10**9, by="admin")
    rev_line, fixed_line = (usage_line(e, META["fdm-01"], "krg", TZ) for e in (rev, fixed))
    assert ",partner=unattributed,site=krg,source=assignment running_s=-1800.0," in rev_line
    assert ",jobs=-1i,sign=-1i," in rev_line
    assert ",partner=lab,site=krg,source=assignment running_s=1800.0," in fixed_line
    # three distinct points (tags or timestamp differ), so none overwrites another
    keys = {(line.split(" ")[0], line.split(" ")[-1]) for line in (original, rev_line, fixed_line)}
    assert len(keys) == 3
