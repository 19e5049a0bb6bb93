"""What a statement shows in HTML and PDF, in Russian, Kazakh and English: the rows and their formatted figures."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from gateway.billing.money import fmt
from gateway.billing.periods import local, parse_month
from gateway.billing.statement import Statement
from gateway.errors import KartechError

Lang = Literal["ru", "kk", "en"]


class StatementError(KartechError):
    """A statement cannot be made (no billing section, an unknown partner, a bad month); the message says why."""


# --- what HTML and PDF show, in each language -----------------------------------------------------------------
TEXT: dict[Lang, dict[str, str]] = {
    "en": {
        "title": "Statement of usage", "partner": "Partner", "tier": "Tier", "month": "Month", "site": "Site",
        "currency": "Currency", "timezone": "Times in", "lines": "Machine time and material",
        "day": "Date", "start": "Start", "end": "End", "machine": "Machine", "project": "Project", "job": "Job",
        "duration": "Running, min", "billed": "Billed, min", "material": "Material", "rate": "Rate per hour",
        "amount": "Amount", "by_machine": "By machine", "by_project": "By project", "subtotal": "Subtotal",
        "discount": "Contract discount", "net": "Net", "vat_added": "VAT", "vat_included": "Including VAT",
        "total": "Total", "none": "No usage in this month.", "no_project": "(no project)",
        "components": "of which: setup fee {setup}, minimum charge {minimum}, material {material}, energy {energy}",
        "entry": "Ledger entry", "note": "Every line is a ledger entry (the last column) that can be checked "
        "against the machine's events; times are rounded up per started billing increment.",
        "academic": "academic", "startup": "startup", "industrial": "industrial",
    },
    "ru": {
        "title": "Выписка об использовании оборудования", "partner": "Партнёр", "tier": "Категория",
        "month": "Месяц", "site": "Площадка", "currency": "Валюта", "timezone": "Время", "lines":
        "Машинное время и материалы", "day": "Дата", "start": "Начало", "end": "Конец", "machine": "Оборудование",
        "project": "Проект", "job": "Задание", "duration": "Работа, мин", "billed": "К оплате, мин",
        "material": "Материал", "rate": "Ставка в час", "amount": "Сумма", "by_machine": "По оборудованию",
        "by_project": "По проектам", "subtotal": "Итого", "discount": "Скидка по договору", "net": "Без НДС",
        "vat_added": "НДС", "vat_included": "В том числе НДС", "total": "Всего к оплате",
        "none": "В этом месяце использования не было.", "no_project": "(без проекта)",
        "components": "в том числе: наладка {setup}, минимальная оплата {minimum}, материал {material}, "
        "энергия {energy}", "entry": "Запись журнала",
        "note": "Каждая строка — запись журнала учёта (последний столбец), которую можно сверить с событиями "
        "оборудования; время округляется вверх до начатого шага тарификации.",
        "academic": "академическая", "startup": "стартап", "industrial": "промышленная",
    },
    "kk": {
        "title": "Жабдықты пайдалану туралы үзінді көшірме", "partner": "Серіктес", "tier": "Санат", "month": "Ай",
        "site": "Алаң", "currency": "Валюта", "timezone": "Уақыт", "lines": "Машина уақыты және материалдар",
        "day": "Күні", "start": "Басталуы", "end": "Аяқталуы", "machine": "Жабдық", "project": "Жоба",
        "job": "Тапсырма", "duration": "Жұмыс, мин", "billed": "Төлеуге, мин", "material": "Материал",
        "rate": "Сағаттық мөлшерлеме", "amount": "Сомасы", "by_machine": "Жабдық бойынша",
        "by_project": "Жобалар бойынша", "subtotal": "Жиыны", "discount": "Шарт бойынша жеңілдік",
        "net": "ҚҚС-сыз", "vat_added": "ҚҚС", "vat_included": "Оның ішінде ҚҚС", "total": "Барлығы төлеуге",
        "none": "Осы айда пайдалану болған жоқ.", "no_project": "(жобасыз)",
        "components": "оның ішінде: баптау {setup}, ең төменгі төлем {minimum}, материал {material}, "
        "энергия {energy}", "entry": "Журнал жазбасы",
        "note": "Әр жол — есепке алу журналының жазбасы (соңғы баған), оны жабдықтың оқиғаларымен салыстырып "
        "тексеруге болады; уақыт тарификацияның басталған қадамына дейін жоғары қарай дөңгелектенеді.",
        "academic": "академиялық", "startup": "стартап", "industrial": "өнеркәсіптік",
    },
}
MONTHS: dict[Lang, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "ru": ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь",
           "ноябрь", "декабрь"),
    "kk": ("қаңтар", "ақпан", "наурыз", "сәуір", "мамыр", "маусым", "шілде", "тамыз", "қыркүйек", "қазан",
           "қараша", "желтоқсан"),
}


@dataclass(frozen=True, slots=True)
class Row:
    day: str
    start: str
    end: str
    machine: str
    project: str
    job: str
    duration: str
    billed: str
    material: str
    rate: str
    amount: str
    extras: str
    entry: str


class StatementView:
    """A statement's text, formatted for people: the same figures as the CSV."""

    def __init__(self, st: Statement, lang: Lang, site_name: str, machine_names: dict[str, str]) -> None:
        self.st = st
        self.lang = lang
        self.t = TEXT[lang]
        self.site_name = site_name
        y, m = parse_month(st.month)
        self.month_name = f"{MONTHS[lang][m - 1]} {y}"
        tz = zoneinfo.ZoneInfo(st.timezone)
        self.names = machine_names
        self.rows: list[Row] = []
        for ln in st.lines:
            s, e = local(ln.start_ns, tz), local(ln.end_ns, tz)
            parts = {"setup": ln.setup_fee, "minimum": ln.minimum_topup, "material": ln.material_amount,
                     "energy": ln.energy}
            extras = self.t["components"].format(**{k: self.money(v) for k, v in parts.items()}) \
                if any(parts.values()) else ""
            self.rows.append(Row(
                day=_day(s.date()), start=s.strftime("%H:%M"), end=e.strftime("%H:%M"),
                machine=self.machine(ln.machine), project=ln.project or "", job=ln.job,
                duration=f"{Decimal(ln.running_ns) / 60_000_000_000:.2f}", billed=str(ln.billed_min),
                material=" ".join(x for x in (ln.material, ln.material_qty) if x),
                rate=self.money(ln.rate) if ln.rate is not None else "", amount=self.money(ln.amount),
                extras="; ".join(x for x in (extras, ln.note) if x), entry=ln.entry))

    def money(self, v: Decimal) -> str:
        return fmt(v, self.st.currency)

    def machine(self, mid: str) -> str:
        name = self.names.get(mid)
        return f"{name} ({mid})" if name and name != mid else mid

    def header(self) -> list[tuple[str, str]]:
        st, t = self.st, self.t
        return [(t["site"], self.site_name), (t["partner"], f"{st.partner_name} ({st.partner})"),
                (t["tier"], t[st.tier]), (t["month"], f"{self.month_name} ({st.month})"),
                (t["currency"], st.currency), (t["timezone"], st.timezone)]

    def subtotals(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return ([(self.machine(m), self.money(a)) for m, a in self.st.by_machine],
                [(p or self.t["no_project"], self.money(a)) for p, a in self.st.by_project])

    def totals(self) -> list[tuple[str, str]]:
        st, t = self.st, self.t
        pct = f"{st.discount_pct.normalize():f}%"
        vat = f"{st.vat_pct.normalize():f}%"
        out = [(t["subtotal"], self.money(st.subtotal))]
        if st.discount:
            out.append((f"{t['discount']} {pct}", self.money(-st.discount)))
            out.append((t["net"], self.money(st.net)))
        if st.vat_mode == "added":
            out += [(f"{t['vat_added']} {vat}", self.money(st.vat)), (t["total"], self.money(st.total))]
        else:
            out += [(t["total"], self.money(st.total)), (f"{t['vat_included']} {vat}", self.money(st.vat))]
        return out


def _day(d: date) -> str:
    return d.isoformat()

