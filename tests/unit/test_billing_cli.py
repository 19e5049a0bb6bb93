"""`kartech billing partners list`, `rates list` and `close`: the site file and a real business store in its data
directory (the scripted month of kit.bill, changes made through the catalog as the API makes them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit.bill import BILLING, at, config, month_entries
from kit.ops import MACHINES, T0

from gateway.billing.catalog import Catalog, RateInClosedMonth
from gateway.billing.persist import LedgerStore
from gateway.cli import main
from gateway.store import Store

SITE = "site: {id: krg, name: Kartech hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES + BILLING


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    store = Store(tmp_path / "data" / "business.sqlite")
    assert LedgerStore(store).add(month_entries()) == len(month_entries())
    catalog = Catalog(store, config())
    catalog.add("partners", {"id": "qarmet", "name": "Qarmet R&D", "tier": "industrial"}, by="hub-it", now_ns=T0)
    catalog.patch("rates", "rate-2", {"per_running_hour": 9900}, by="hub-it", now_ns=T0,
                  valid_from_ns=at("2025-06-01 00:00"))
    store.close()
    return path


def billing(site: Path, *args: str) -> int:
    return main(["billing", *args, "--config", str(site), "--data-dir", str(site.parent / "data")])


def test_partners_and_rates_in_effect_are_listed(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert billing(site, "partners", "list") == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["acme\tACME Mining R&D\tindustrial\t10\tore,tools",
                                    "lab\tMaterials lab\tacademic\t0\t", "qarmet\tQarmet R&D\tindustrial\t0\t"]
    assert out.err == "3 partners (id, name, tier, discount %, projects)\n"
    assert billing(site, "rates", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "rate-1\tkind:printer\t1200\t15\t1000\t500\tsite file",
        "rate-2\tcnc-01\t9900\t15\t4500\t2000\t2025-05-31T19:00:00.000Z"]


def test_a_month_is_closed_once_after_its_end(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert billing(site, "close", "--month", "2025-03", "--by", "accountant") == 0
    assert capsys.readouterr().err == "2025-03 closed by accountant: its statements are final\n"
    assert billing(site, "close", "--month", "2025-03") == 1
    assert "kartech billing close: 2025-03 was closed already, at " in capsys.readouterr().err
    assert billing(site, "close", "--month", "2199-12") == 1  # over only in 2200
    assert ("kartech billing close: 2199-12 is not over yet in Asia/Almaty (it ends 2199-12-31T19:00:00.000Z); a "
            "month is closed after its end") in capsys.readouterr().err
    assert billing(site, "close", "--month", "2025-13") == 1
    assert "'2025-13' is not a month; write YYYY-MM, e.g. 2025-03" in capsys.readouterr().err
    store = Store(site.parent / "data" / "business.sqlite")
    try:
        assert [(m, by) for m, _, by in LedgerStore(store).closed_months()] == [("2025-03", "accountant")]
        # the API's rule afterwards: no rate change inside the closed month
        with pytest.raises(RateInClosedMonth):
            Catalog(store, config()).patch("rates", "rate-1", {"setup_fee": 1}, by="hub-it", now_ns=T0,
                                           valid_from_ns=at("2025-03-15 00:00"))
    finally:
        store.close()
    code = main(["billing", "close", "--config", str(site), "--data-dir", str(site.parent / "nowhere"),
                 "--month", "2025-03"])
    assert code == 1
    assert f"no business store at {site.parent / 'nowhere' / 'business.sqlite'}" in capsys.readouterr().err
