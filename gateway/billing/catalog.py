"""Partners, projects, users and rate cards as admins change them through the API, on top of the site file.

The site file's `billing:` section is the base. Each change an admin makes (add an item; patch fields of one) is an
audit record in the business store's `billing_changes` table — who, when, the fields given, the item before and
after — and records are never edited or deleted. The section in effect at a time is the site file's with every
change whose `valid_from` is not later applied, in the order (valid_from, record id):

- an added partner, project or user exists from the start (valid_from 0): it has no history to change;
- a patch of a partner or a user applies from the moment it is recorded;
- an added or patched rate card applies from its `valid_from` (default: when recorded), never inside or before a
  closed month (`RateInClosedMonth`), so a closed month's statement never changes; a statement prices each ledger
  entry with the cards in effect at the entry's start (statement.build_statement, `billing_at`).

Every point of that timeline is validated by the site file's own models and reference checks
(gateway/config/references.py): a change that would give a section `check-config` refuses is refused with the same
messages and locations (`Refused`), and nothing is recorded. Rate cards always have an id in the effective section
(the site file's own, or rate-N from its position, config.billing.rate_id).
"""

from __future__ import annotations

import bisect
import copy
import json
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from gateway.billing.periods import month_span
from gateway.billing.persist import LedgerStore
from gateway.config.billing import BillingSection, rate_id
from gateway.config.loader import _key, _message
from gateway.config.references import billing_checks
from gateway.config.site import SiteConfig
from gateway.errors import ConfigError, KartechError
from gateway.state.model import iso
from gateway.store import Store

List = Literal["partners", "projects", "users", "rates"]
LISTS: tuple[List, ...] = ("partners", "projects", "users", "rates")
WHAT: dict[List, str] = {"partners": "partner", "projects": "project", "users": "user", "rates": "rate card"}
PATCH_ROUTES: dict[List, str] = {"partners": "/api/v1/partners/", "users": "/api/v1/billing/users/",
                                 "rates": "/api/v1/rates/"}
ALWAYS = 0  # valid_from of added partners, projects and users

SCHEMA = ("""CREATE TABLE IF NOT EXISTS billing_changes (
    id INTEGER PRIMARY KEY,
    recorded_ns INTEGER NOT NULL,
    by TEXT NOT NULL,
    list TEXT NOT NULL,
    item TEXT NOT NULL,
    op TEXT NOT NULL,
    valid_from_ns INTEGER NOT NULL,
    fields TEXT NOT NULL,
    before TEXT,
    after TEXT NOT NULL
)""",)


class CatalogError(KartechError):
    """A change that is not made; the message says why."""


class NoBilling(CatalogError):
    """The site file has no billing section to change."""


class UnknownItem(CatalogError):
    """No partner, project, user or rate card with that id (or index)."""


class Exists(CatalogError):
    """An item with that id exists already."""


class RateInClosedMonth(CatalogError):
    """A change would take effect inside (or before) a closed month."""


class Refused(CatalogError):
    """The change gives a billing section the site file's checks refuse; `problems` as check-config words them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    recorded_ns: int
    by: str
    list: List
    item: str
    op: Literal["add", "patch"]
    valid_from_ns: int
    fields: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any]


_Timeline = list[tuple[int, BillingSection, dict[str, Any]]]  # (from, section, its data) in time order


class Catalog:
    """The billing section in effect at any time: the site file's plus the recorded changes (see the module)."""

    def __init__(self, store: Store, cfg: SiteConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.ledger = LedgerStore(store)
        for sql in SCHEMA:
            store.execute(sql)
        self._base: dict[str, Any] | None = None
        if cfg.billing is not None:
            self._base = cfg.billing.model_dump(mode="json")
            for i, card in enumerate(cfg.billing.rates):
                self._base["rates"][i]["id"] = rate_id(i, card)
        try:
            self._timeline = self._replay(self.changes())
        except CatalogError as err:
            raise ConfigError(f"the billing changes made through the API no longer fit the site file: {err}; "
                              "change the site file so that they fit (GET /api/v1/billing/changes lists them)"
                              ) from err

    # --- reading ----------------------------------------------------------------------------------------------
    def at(self, ts_ns: int) -> BillingSection | None:
        """The billing section in effect at `ts_ns` (None: the site file has no billing section)."""
        if not self._timeline:
            return None
        return _point(self._timeline, ts_ns)[1]

    def since(self, ts_ns: int) -> dict[str, int]:
        """Rate card id -> since when (UTC ns) the version of the card in effect at `ts_ns` applies; cards
        unchanged since the site file are left out."""
        out: dict[str, int] = {}
        for ch in self.changes(list_="rates"):
            if ch.valid_from_ns <= ts_ns:
                out[ch.item] = max(out.get(ch.item, ch.valid_from_ns), ch.valid_from_ns)
        return out

    def changes(self, *, list_: List | None = None, limit: int = 1_000_000) -> list[Change]:
        """Every recorded change (of one list), oldest first."""
        sql, params = "SELECT * FROM billing_changes", list[object]()
        if list_ is not None:
            sql += " WHERE list = ?"
            params.append(list_)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [Change(id=r["id"], recorded_ns=r["recorded_ns"], by=r["by"], list=r["list"], item=r["item"],
                       op=r["op"], valid_from_ns=r["valid_from_ns"], fields=json.loads(r["fields"]),
                       before=json.loads(r["before"]) if r["before"] is not None else None,
                       after=json.loads(r["after"])) for r in self.store.query(sql, params)]

    # --- changing ---------------------------------------------------------------------------------------------
    def add(self, list_: List, item: Mapping[str, Any], *, by: str, now_ns: int,
            valid_from_ns: int | None = None) -> Change:
        """Add a partner, project, user (in effect from the start) or rate card (from `valid_from_ns`, default
        `now_ns`). A rate card without an id gets rate-N, N the first free number."""
        fields = to_jsonable_python(dict(item))
        current = self._current(now_ns)
        if list_ == "rates":
            if fields.get("id") is None:
                taken = {c.id for c in current.rates}
                fields["id"] = next(f"rate-{n}" for n in range(len(current.rates) + 1, 10**6)
                                    if f"rate-{n}" not in taken)
            valid = now_ns if valid_from_ns is None else valid_from_ns
            self._check_open(valid)
        else:
            valid = ALWAYS
        item_id = str(fields.get("id", ""))
        if any(x["id"] == item_id for x in self._data_at(max(valid, now_ns))[list_]):
            how = f"; change it with PATCH {PATCH_ROUTES[list_]}{item_id}" if list_ in PATCH_ROUTES else ""
            raise Exists(f'{WHAT[list_]} "{item_id}" exists already{how}')
        return self._record(list_, item_id, "add", valid, fields, by=by, now_ns=now_ns)

    def patch(self, list_: List, ref: str, fields: Mapping[str, Any], *, by: str, now_ns: int,
              valid_from_ns: int | None = None) -> Change:
        """Change fields of an item (a rate card named by its id or its index under billing.rates). Partners and
        users change from `now_ns`; rate cards from `valid_from_ns` (default `now_ns`)."""
        values = to_jsonable_python(dict(fields))
        valid = now_ns if valid_from_ns is None or list_ != "rates" else valid_from_ns
        self._check_open(valid)
        item_id = self._resolve(list_, ref, self._data_at(valid))
        if "id" in values and values["id"] != item_id:
            raise Refused([f"billing.{list_}: the id of a {WHAT[list_]} does not change; add a new one instead"])
        before = next(x for x in self._data_at(valid)[list_] if x["id"] == item_id)
        if not values or all(before.get(k) == v for k, v in values.items()):
            raise Refused([f'billing.{list_}: this changes nothing; {WHAT[list_]} "{item_id}" has these values'])
        return self._record(list_, item_id, "patch", valid, values, by=by, now_ns=now_ns)

    def _record(self, list_: List, item_id: str, op: Literal["add", "patch"], valid: int, fields: dict[str, Any],
                *, by: str, now_ns: int) -> Change:
        with self.store.transaction() as db:
            new = Change(id=self._next_id(), recorded_ns=now_ns, by=by, list=list_, item=item_id, op=op,
                         valid_from_ns=valid, fields=fields, before=None, after={})
            timeline = self._replay([*self.changes(), new])  # raises Refused: nothing is written
            before = _find(self._data_before(timeline, valid, new.id), list_, item_id)
            after = _find(_point(timeline, valid)[2], list_, item_id)
            db.execute("INSERT INTO billing_changes (id, recorded_ns, by, list, item, op, valid_from_ns, fields, "
                       "before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (new.id, now_ns, by, list_, item_id, op, valid, json.dumps(fields, sort_keys=True),
                        json.dumps(before, sort_keys=True) if before is not None else None,
                        json.dumps(after, sort_keys=True)))
        self._timeline = timeline
        return Change(id=new.id, recorded_ns=now_ns, by=by, list=list_, item=item_id, op=op, valid_from_ns=valid,
                      fields=fields, before=before, after=after or {})

    # --- the timeline -----------------------------------------------------------------------------------------
    def _replay(self, changes: list[Change]) -> _Timeline:
        if self._base is None:
            if changes:
                raise NoBilling("the site file has no billing section")
            return []
        data = copy.deepcopy(self._base)
        out: _Timeline = [(0, self._validate(data, None), copy.deepcopy(data))]
        ordered = sorted(changes, key=lambda c: (c.valid_from_ns, c.id))
        for k, ch in enumerate(ordered):
            _apply(data, ch)
            if k + 1 == len(ordered) or ordered[k + 1].valid_from_ns != ch.valid_from_ns:
                section = self._validate(data, ch)
                if out[-1][0] == ch.valid_from_ns:
                    out.pop()
                out.append((ch.valid_from_ns, section, copy.deepcopy(data)))
        return out

    def _validate(self, data: dict[str, Any], change: Change | None) -> BillingSection:
        wrapped = {"billing": data}
        try:
            section = BillingSection.model_validate(data)
        except ValidationError as err:
            problems = []
            for e in err.errors(include_url=False):
                loc = ("billing", *e["loc"])
                if e["type"].startswith(("greater_than", "less_than")) and isinstance(e.get("input"), str):
                    # money is kept as exact decimal text: the number as the site file would show it
                    e = {**e, "input": _number(e["input"])}
                problems.append(f"{_key(loc)}: {_message(e, loc, SiteConfig, {}, wrapped)}")
            raise Refused(problems) from None
        refs = billing_checks(self.cfg.model_copy(update={"billing": section}))
        if refs:
            raise Refused([f"{_key(loc)}: {msg}" for loc, _, msg in refs])
        return section

    def _data_before(self, timeline: _Timeline, valid: int, change_id: int) -> dict[str, Any]:
        """The section's data just before the change `change_id` (at `valid`) applied."""
        prior = [c for c in self.changes() if (c.valid_from_ns, c.id) < (valid, change_id)]
        data = copy.deepcopy(self._base or {})
        for c in sorted(prior, key=lambda c: (c.valid_from_ns, c.id)):
            _apply(data, c)
        return data

    def _data_at(self, ts_ns: int) -> dict[str, Any]:
        if not self._timeline:
            raise NoBilling("billing is not configured on this gateway (no billing section in the site file)")
        return _point(self._timeline, ts_ns)[2]

    def _current(self, now_ns: int) -> BillingSection:
        b = self.at(now_ns)
        if b is None:
            raise NoBilling("billing is not configured on this gateway (no billing section in the site file)")
        return b

    def _next_id(self) -> int:
        row = self.store.one("SELECT COALESCE(MAX(id), 0) + 1 AS id FROM billing_changes")
        return int(row["id"]) if row is not None else 1

    def _resolve(self, list_: List, ref: str, data: dict[str, Any]) -> str:
        items = data[list_]
        if any(x["id"] == ref for x in items):
            return ref
        if list_ == "rates" and ref.isdigit() and int(ref) < len(items):
            return str(items[int(ref)]["id"])
        known = ", ".join(str(x["id"]) for x in items) or "none"
        raise UnknownItem(f'no {WHAT[list_]} "{ref}" (known: {known})')

    def _check_open(self, valid_from_ns: int) -> None:
        closed = self.ledger.closed_months()
        if not closed:
            return
        month, closed_ns, by = closed[-1]
        _, end_ns = month_span(month, zoneinfo.ZoneInfo(self.cfg.site.timezone))
        if valid_from_ns < end_ns:
            raise RateInClosedMonth(f"valid_from {iso(valid_from_ns)} is not after the closed month {month} "
                                    f"(closed at {iso(closed_ns)} by {by}); a change takes effect at the earliest "
                                    f"at {iso(end_ns)}, the end of the last closed month, so that closed months "
                                    "keep their statements")


def _point(timeline: _Timeline, ts_ns: int) -> tuple[int, BillingSection, dict[str, Any]]:
    i = bisect.bisect_right([p[0] for p in timeline], ts_ns) - 1
    return timeline[max(i, 0)]


def _find(data: dict[str, Any], list_: List, item_id: str) -> dict[str, Any] | None:
    return next((copy.deepcopy(x) for x in data.get(list_, []) if x["id"] == item_id), None)


def _apply(data: dict[str, Any], ch: Change) -> None:
    items: list[dict[str, Any]] = data[ch.list]
    if ch.op == "add":
        items.append(copy.deepcopy(ch.fields))
        return
    for i, x in enumerate(items):
        if x["id"] == ch.item:
            items[i] = {**x, **copy.deepcopy(ch.fields)}
            return
    raise Refused([f"billing.{ch.list}: no {WHAT[ch.list]} \"{ch.item}\" at the time change {ch.id} takes "
                   "effect (valid_from is earlier than the item's own start)"])


def _number(text: str) -> object:
    try:
        d = Decimal(text)
    except ArithmeticError:
        return text
    if not d.is_finite():
        return text
    return int(d) if d == d.to_integral_value() else float(d)
