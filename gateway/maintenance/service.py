"""Maintenance tasks of every machine: status from live usage counters, `done` with an audit log.

Baselines and the log live in the business store, so counters and history survive restarts. A task reaching
its warning percentage or its limit raises a low / medium alert (`maintenance:<task>`) through the alert book;
marking it done clears that alert and resets the task's counters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from gateway.alerts.book import AlertBook
from gateway.config.operations import MaintenancePlan, MaintenanceSection
from gateway.errors import KartechError
from gateway.machines import MachineMeta
from gateway.maintenance.plans import Baseline, applies, evaluate, used_since
from gateway.state.events import Event
from gateway.state.model import iso
from gateway.store import Store

log = logging.getLogger(__name__)

SEVERITY = {"due_soon": "low", "due": "medium"}


class UnknownTask(KartechError):
    """No such task on this machine."""


class Maintenance:
    def __init__(self, store: Store, section: MaintenanceSection, machines: Sequence[MachineMeta], *,
                 counters: Callable[[str], dict[str, float]], now_ns: int,
                 emit: Callable[[Event], None] | None = None, book: AlertBook | None = None) -> None:
        self.store = store
        self.section = section
        self.machines = {m.id: m for m in machines}
        self.counters = counters
        self.emit = emit
        self.book = book
        self.plans: dict[str, list[MaintenancePlan]] = {
            m.id: [p for p in section.plans if applies(p, m)] for m in machines}
        self._status: dict[tuple[str, str], str] = {}
        # usage counts from the moment a task is first known, not from when somebody first looks at it
        for mid, plans in self.plans.items():
            for p in plans:
                self._baseline(mid, p.id, now_ns)

    def _baseline(self, machine: str, task: str, now_ns: int) -> Baseline:
        row = self.store.one("SELECT done_ns, counters FROM maintenance_baseline WHERE machine = ? AND task = ?",
                             (machine, task))
        if row is None:
            counters = self.counters(machine)
            self.store.execute("INSERT OR IGNORE INTO maintenance_baseline (machine, task, done_ns, counters) "
                               "VALUES (?, ?, ?, ?)", (machine, task, now_ns, json.dumps({**counters,
                                                                                          "initial": 1})))
            return Baseline(now_ns, counters, True)
        saved = json.loads(row["counters"])
        return Baseline(row["done_ns"], saved, bool(saved.get("initial")))

    def _plan(self, machine: str, task: str) -> MaintenancePlan:
        for p in self.plans.get(machine, ()):
            if p.id == task:
                return p
        known = ", ".join(p.id for p in self.plans.get(machine, ())) or "none"
        raise UnknownTask(f"machine '{machine}' has no maintenance task '{task}' (its tasks: {known})")

    def task(self, machine: str, task: str, now_ns: int) -> dict[str, Any]:
        plan = self._plan(machine, task)
        base = self._baseline(machine, task, now_ns)
        used = used_since(base, self.counters(machine), now_ns, plan.already_used)
        last = self.store.one("SELECT done_ns, done_by, note FROM maintenance_log WHERE machine = ? AND task = ? "
                              "ORDER BY id DESC LIMIT 1", (machine, task))
        return {
            "machine": machine, "task": task, "name": plan.name,
            **evaluate(plan, used, self.section.warn_at_pct),
            "counting_since": iso(base.done_ns),
            "last_done": None if last is None else {"at": iso(last["done_ns"]), "by": last["done_by"],
                                                    "note": last["note"]},
        }

    def tasks(self, now_ns: int, machine: str | None = None) -> list[dict[str, Any]]:
        out = [self.task(mid, p.id, now_ns) for mid, plans in self.plans.items() for p in plans
               if machine is None or mid == machine]
        order = {"due": 0, "due_soon": 1, "ok": 2}
        out.sort(key=lambda t: (order[t["status"]], -t["pct"]))
        return out

    def done(self, machine: str, task: str, *, by: str, note: str, now_ns: int) -> dict[str, Any]:
        """Log the task as done now and restart its counters."""
        before = self.task(machine, task, now_ns)
        counters = self.counters(machine)
        with self.store.transaction() as db:
            db.execute("INSERT INTO maintenance_log (machine, task, done_ns, done_by, note, usage) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (machine, task, now_ns, by, note, json.dumps(before["limits"])))
            db.execute("INSERT INTO maintenance_baseline (machine, task, done_ns, counters) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (machine, task) DO UPDATE SET done_ns = excluded.done_ns, "
                       "counters = excluded.counters", (machine, task, now_ns, json.dumps(counters)))
        log.info("maintenance %s on %s done by %s", task, machine, by)
        if self.emit is not None:
            self.emit(Event(now_ns, machine, "maintenance_done", {"task": task, "by": by, "note": note,
                                                                  "usage": before["limits"]}))
        if self.book is not None:
            self.book.clear(rule=f"maintenance:{task}", machine=machine, now_ns=now_ns)
        self._status[(machine, task)] = "ok"
        return self.task(machine, task, now_ns)

    def history(self, machine: str | None = None, task: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM maintenance_log WHERE 1=1", list[Any]()
        if machine:
            sql += " AND machine = ?"
            params.append(machine)
        if task:
            sql += " AND task = ?"
            params.append(task)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [{"id": r["id"], "machine": r["machine"], "task": r["task"], "at": iso(r["done_ns"]),
                 "by": r["done_by"], "note": r["note"], "usage": json.loads(r["usage"])}
                for r in self.store.query(sql, params)]

    def check(self, now_ns: int) -> None:
        """Raise a maintenance alert when a task becomes due soon or due (once per change)."""
        if self.book is None:
            return
        for t in self.tasks(now_ns):
            key = (t["machine"], t["task"])
            status = t["status"]
            if self._status.get(key) == status:
                continue
            self._status[key] = status
            if status == "ok":
                continue
            meta = self.machines[t["machine"]]
            en = f"{meta.name}: maintenance '{t['name']}' is {'due' if status == 'due' else 'due soon'} " \
                 f"({t['pct']:.0f} % of its limit)."
            ru = f"{meta.name}: обслуживание «{t['name']}» — {'пора выполнить' if status == 'due' else 'скоро'} " \
                 f"({t['pct']:.0f} % от предела)."
            rule = f"maintenance:{t['task']}"
            self.book.clear(rule=rule, machine=meta.id, now_ns=now_ns)
            self.book.raise_(rule=rule, machine=meta.id, lab=meta.lab, severity=SEVERITY[status], message=(en, ru),
                             value=t["pct"], now_ns=now_ns, suppressed=False)
