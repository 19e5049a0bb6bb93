"""`kartech billing statement`: the scripted month's ledger (kit.bill) in a real business store, the statement as
CSV, HTML and PDF in Russian and English; the PDF's text (extracted with pypdf) carries the CSV's amounts."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from kit.bill import BILLING, month_entries
from kit.ops import MACHINES
from pypdf import PdfReader

from gateway.billing.documents import render, statement_of
from gateway.billing.html import statement_html
from gateway.billing.pdf import FONT_PACKAGE, statement_pdf
from gateway.billing.persist import LedgerStore
from gateway.billing.view import StatementError, StatementView
from gateway.cli import main
from gateway.config.loader import load
from gateway.registry import discover
from gateway.store import Store

SITE = "site: {id: krg, name: Kartech hub}\nmqtt: {brokers: [{id: lab, host: 127.0.0.1}]}\n" + MACHINES + BILLING


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site file and, next to it, a data directory whose business store holds the scripted month."""
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    store = Store(tmp_path / "data" / "business.sqlite")
    assert LedgerStore(store).add(month_entries()) == len(month_entries())
    store.close()
    return path


def statement(site: Path, *args: str) -> tuple[int, bytes]:
    out = site.parent / "out.bin"
    out.unlink(missing_ok=True)
    code = main(["billing", "statement", "--config", str(site), "--data-dir", str(site.parent / "data"),
                 "--out", str(out), *args])
    return code, out.read_bytes() if out.exists() else b""


def summary(csv_text: str) -> dict[str, str]:
    """row kind (subtotal, discount, net, vat, total) -> amount, from the CSV."""
    return {r["row"]: r["amount"] for r in csv.DictReader(io.StringIO(csv_text)) if r["row"] != "line"
            and r["row"] not in ("machine", "project")}


def test_csv_from_the_cli_is_the_statement_of_the_ledger(site: Path) -> None:
    code, data = statement(site, "--partner", "acme", "--month", "2025-03", "--format", "csv")
    assert code == 0
    text = data.decode()
    assert text.splitlines()[-1] == "total,acme,2025-03,,,,,,,,,,,,,,,,,,,50266.44,KZT,,"  # the README's sample
    assert summary(text) == {"subtotal": "49867.50", "discount": "-4986.75", "net": "44880.75", "vat": "5385.69",
                             "total": "50266.44"}
    assert statement(site, "--partner", "acme", "--month", "2025-03")[1] == data  # csv is the default; same bytes


@pytest.mark.parametrize(("lang", "words"), [("ru", ("Выписка об использовании", "Всего к оплате", "НДС 12%",
                                                     "Скидка по договору 10%", "март 2025")),
                                             ("kk", ("Жабдықты пайдалану туралы үзінді көшірме", "Барлығы төлеуге",
                                                     "ҚҚС 12%", "Шарт бойынша жеңілдік 10%", "наурыз 2025")),
                                             ("en", ("Statement of usage", "Total", "VAT 12%",
                                                     "Contract discount 10%", "March 2025"))])
def test_html_is_self_contained_and_has_the_csv_amounts(site: Path, lang: str, words: tuple[str, ...]) -> None:
    _, csv_data = statement(site, "--partner", "acme", "--month", "2025-03")
    code, data = statement(site, "--partner", "acme", "--month", "2025-03", "--format", "html", "--lang", lang)
    assert code == 0
    html = data.decode()
    assert html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{lang}">' in html
    for w in words:
        assert w in html
    assert not re.search(r"(src|href)\s*=|@import|url\(|<script", html)  # nothing fetched from anywhere
    for row in csv.DictReader(io.StringIO(csv_data.decode())):
        assert f">{row['amount']}<" in html, row
    assert "ACME Mining R&amp;D (acme)" in html  # escaped


@pytest.mark.parametrize(("lang", "words"), [("ru", ("Выписка об использовании оборудования", "Всего к оплате",
                                                     "Партнёр", "Скидка по договору 10%")),
                                             ("kk", ("Жабдықты пайдалану", "Барлығы төлеуге", "Серіктес",
                                                     "өнеркәсіптік", "Шарт бойынша жеңілдік 10%")),
                                             ("en", ("Statement of usage", "Total", "Partner"))])
def test_pdf_text_has_the_csv_totals_cyrillic_included(site: Path, lang: str, words: tuple[str, ...]) -> None:
    _, csv_data = statement(site, "--partner", "acme", "--month", "2025-03")
    code, data = statement(site, "--partner", "acme", "--month", "2025-03", "--format", "pdf", "--lang", lang)
    assert code == 0
    assert data.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    for w in words:
        assert w in text
    rows = list(csv.DictReader(io.StringIO(csv_data.decode())))
    for row in rows:  # every line, subtotal and total of the CSV
        assert row["amount"] in text, row
    assert rows[-1]["row"] == "total"
    assert "50266.44" in text
    # the same statement gives the same file
    assert statement(site, "--partner", "acme", "--month", "2025-03", "--format", "pdf", "--lang", lang)[1] == data


def test_a_missing_font_is_a_clear_error_naming_the_package(site: Path, tmp_path: Path) -> None:
    cfg = load(str(site), discover())
    store = Store(site.parent / "data" / "business.sqlite")
    st = statement_of(cfg, LedgerStore(store), "acme", "2025-03")
    view = StatementView(st, "ru", cfg.site.name, {})
    with pytest.raises(StatementError, match=f"install Debian's {FONT_PACKAGE} package") as err:
        statement_pdf(view, font_dirs=(tmp_path / "no-fonts",))
    assert "DejaVuSans.ttf" in str(err.value)
    assert str(tmp_path / "no-fonts") in str(err.value)
    assert "<td>" in statement_html(view)
    assert render(st, "csv", "en", site_name="x").filename == "statement-acme-2025-03.csv"
    store.close()


def test_bad_requests_are_refused_with_what_and_where(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert statement(site, "--partner", "nobody", "--month", "2025-03")[0] == 1
    assert '"nobody" is not a partner of this site (billing.partners: acme, lab)' in capsys.readouterr().err
    assert statement(site, "--partner", "acme", "--month", "2025-13")[0] == 1
    assert "'2025-13' is not a month; write YYYY-MM, e.g. 2025-03" in capsys.readouterr().err
    assert statement(site, "--partner", "acme", "--month", "2999-12")[0] == 1
    assert "'2999-12' is out of range; a month from 1970-01 to 2199-12" in capsys.readouterr().err
    code = main(["billing", "statement", "--config", str(site), "--data-dir", str(site.parent / "nowhere"),
                 "--partner", "acme", "--month", "2025-03"])
    assert code == 1
    assert f"no business store at {site.parent / 'nowhere' / 'business.sqlite'}" in capsys.readouterr().err


def test_a_month_without_usage_is_an_empty_statement(site: Path) -> None:
    code, data = statement(site, "--partner", "lab", "--month", "2025-05", "--format", "html", "--lang", "en")
    assert code == 0
    assert "No usage in this month." in data.decode()


def test_unattributed_usage_is_listed(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["billing", "unattributed", "--config", str(site), "--data-dir", str(site.parent / "data")]) == 0
    out = capsys.readouterr()
    assert out.out.split("\t")[1:4] == [next(e.key for e in month_entries() if e.partner is None), "fdm-01",
                                        "random.gcode"]
    assert "1 unattributed entries" in out.err
