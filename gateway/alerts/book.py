"""The alert book: the ISA-18.2 lifecycle of gateway/alerts/lifecycle.py, persisted in the business store.

Every change is: load the row, apply the pure transition, persist the new value — in one transaction with the
notifications it causes (the outbox), so a restart neither loses nor repeats them. Notifications go out when an
alert is raised, repeated, cleared or returns from shelving/suppression, and — flood protection — at most once
per rule and machine per `notify_window_s` (a clearing always goes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from gateway.alerts import lifecycle as lc
from gateway.alerts.lifecycle import OPEN_STATES, Alert, AlertClosed, AlertNotFound, Step
from gateway.config.operations import SEVERITY_RANK, Channel
from gateway.notify.routing import routes
from gateway.state.events import Event
from gateway.state.model import iso
from gateway.store import Row, Store, Tx

__all__ = ["OPEN_STATES", "AlertBook", "AlertClosed", "AlertNotFound", "alert_dict", "state_of"]

NS = lc.NS
_LIFECYCLE = ("active", "acked", "suppressed", "count", "raised_ns", "last_raised_ns", "cleared_ns", "acked_ns",
              "acked_by", "ack_note", "shelved_until_ns", "shelved_by", "shelve_note", "closed_ns", "notify_pending")
_BOOLS = frozenset({"active", "acked", "suppressed", "notify_pending"})
_UPDATE = "UPDATE alerts SET " + ", ".join(f"{c} = ?" for c in _LIFECYCLE) + " WHERE id = ?"  # noqa: S608


def load(row: Row) -> Alert:
    """The lifecycle value of a stored alert."""
    return Alert(raised_ns=row["raised_ns"], last_raised_ns=row["last_raised_ns"], active=bool(row["active"]),
                 acked=bool(row["acked"]), suppressed=bool(row["suppressed"]), count=row["count"],
                 cleared_ns=row["cleared_ns"], acked_ns=row["acked_ns"], acked_by=row["acked_by"],
                 ack_note=row["ack_note"], shelved_until_ns=row["shelved_until_ns"], shelved_by=row["shelved_by"],
                 shelve_note=row["shelve_note"], closed_ns=row["closed_ns"],
                 notify_pending=bool(row["notify_pending"]))


def state_of(row: Row) -> str:
    return load(row).state


def alert_dict(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "rule": row["rule"],
        "machine": row["machine"],
        "lab": row["lab"],
        "severity": row["severity"],
        "state": state_of(row),
        "active": bool(row["active"]),
        "acknowledged": bool(row["acked"]),
        "suppressed": bool(row["suppressed"]),
        "count": row["count"],
        "raised": iso(row["raised_ns"]),
        "last_raised": iso(row["last_raised_ns"]),
        "cleared": iso(row["cleared_ns"]),
        "acknowledged_at": iso(row["acked_ns"]),
        "acknowledged_by": row["acked_by"],
        "ack_note": row["ack_note"],
        "shelved_until": iso(row["shelved_until_ns"]),
        "shelved_by": row["shelved_by"],
        "shelve_note": row["shelve_note"],
        "closed": iso(row["closed_ns"]),
        "value": json.loads(row["value"]) if row["value"] is not None else None,
        "message": {"en": row["message_en"], "ru": row["message_ru"]},
    }


class AlertBook:
    def __init__(self, store: Store, *, site_id: str, channels: Sequence[Channel], notify_window_s: float,
                 emit: Callable[[Event], None] | None = None,
                 publish: Callable[[dict[str, Any]], None] | None = None,
                 wake: Callable[[], None] | None = None) -> None:
        self.store = store
        self.site_id = site_id
        self.channels = list(channels)
        self.window_ns = int(notify_window_s * NS)
        self.emit = emit
        self.publish = publish
        self.wake = wake

    # --- reading --------------------------------------------------------------------------------------------
    def _row(self, alert_id: int) -> Row:
        row = self.store.one("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        if row is None:
            raise AlertNotFound(f"no alert {alert_id}; GET /api/v1/alerts lists them")
        return row

    def get(self, alert_id: int) -> dict[str, Any]:
        return alert_dict(self._row(alert_id))

    def open_rows(self, machine: str | None = None) -> list[Row]:
        if machine is None:
            return self.store.query("SELECT * FROM alerts WHERE closed_ns IS NULL ORDER BY id")
        return self.store.query("SELECT * FROM alerts WHERE closed_ns IS NULL AND machine = ? ORDER BY id",
                                (machine,))

    def active_keys(self) -> set[tuple[str, str]]:
        """(rule, machine) of open alerts whose condition is active: their rules start active after a restart."""
        return {(r["rule"], r["machine"]) for r in self.open_rows() if r["active"]}

    def find(self, *, state: str | None = None, machine: str | None = None, severity: str | None = None,
             limit: int = 500) -> list[dict[str, Any]]:
        """Open alerts by default (most severe, then newest first); state=all or closed for history."""
        sql, params = "SELECT * FROM alerts WHERE 1=1", list[Any]()
        if state in (None, "open") or (state in OPEN_STATES):
            sql += " AND closed_ns IS NULL"
        elif state == "closed":
            sql += " AND closed_ns IS NOT NULL"
        if machine:
            sql += " AND machine = ?"
            params.append(machine)
        if severity:
            sql += " AND severity = ?"
            params.append(severity)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit if state not in OPEN_STATES else 100_000)
        rows = [alert_dict(r) for r in self.store.query(sql, params)]
        if state in OPEN_STATES:
            rows = [r for r in rows if r["state"] == state][:limit]
        if state in (None, "open"):
            rows.sort(key=lambda a: (-SEVERITY_RANK[a["severity"]], -a["id"]))
        return rows

    # --- transitions ----------------------------------------------------------------------------------------
    def _after(self, row: Row, transition: str, now_ns: int, **extra: Any) -> dict[str, Any]:
        alert = alert_dict(row)
        if self.emit is not None:
            self.emit(Event(now_ns, row["machine"], "alert", {
                "alert_id": row["id"], "rule": row["rule"], "severity": row["severity"], "transition": transition,
                "state": alert["state"], "count": row["count"], "message": row["message_en"], **extra}))
        if self.publish is not None:
            self.publish({"type": "alert", "transition": transition, "alert": alert})
        return alert

    def _persist(self, db: Tx, alert_id: int, step: Step, now_ns: int) -> Row:
        """Write the new lifecycle value and queue the notification it causes; the stored row."""
        a = step.alert
        db.execute(_UPDATE, (*(int(getattr(a, c)) if c in _BOOLS else getattr(a, c) for c in _LIFECYCLE),
                             alert_id))
        row: Row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if step.notify is not None:
            self._notify(db, row, step.notify, now_ns)
        return row

    def _notify(self, db: Tx, row: Row, transition: str, now_ns: int) -> int:
        """Queue notifications for this transition (respecting the flood window); how many were queued."""
        targets = routes(self.channels, severity=row["severity"], lab=row["lab"], transition=transition)
        if not targets:
            return 0
        last = db.execute("SELECT last_ns FROM notify_window WHERE rule = ? AND machine = ?",
                          (row["rule"], row["machine"])).fetchone()
        if not lc.notify_due(transition, last["last_ns"] if last is not None else None, now_ns, self.window_ns):
            return 0
        if transition != "cleared":
            db.execute("INSERT INTO notify_window (rule, machine, last_ns) VALUES (?, ?, ?) "
                       "ON CONFLICT (rule, machine) DO UPDATE SET last_ns = excluded.last_ns",
                       (row["rule"], row["machine"], now_ns))
        payload = json.dumps({"site": self.site_id, "transition": transition, "alert": alert_dict(row)},
                             ensure_ascii=False)
        for channel in targets:
            db.execute("INSERT INTO outbox (alert_id, channel, payload, next_ns, created_ns) VALUES (?, ?, ?, ?, ?)",
                       (row["id"], channel, payload, now_ns, now_ns))
        if self.wake is not None:
            self.wake()
        return len(targets)

    def raise_(self, *, rule: str, machine: str, lab: str | None, severity: str, message: tuple[str, str],
               value: object, now_ns: int, suppressed: bool) -> dict[str, Any]:
        """The condition of `rule` became true on `machine`: a new alert, or one more occurrence of the open one."""
        value_json = json.dumps(value, default=str)
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM alerts WHERE rule = ? AND machine = ? AND closed_ns IS NULL",
                             (rule, machine)).fetchone()
            if row is None:
                step = lc.raised(now_ns, suppressed=suppressed)
                new_id = db.execute(
                    "INSERT INTO alerts (rule, machine, lab, severity, active, raised_ns, last_raised_ns, value, "
                    "message_en, message_ru) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                    (rule, machine, lab, severity, now_ns, now_ns, value_json, *message),
                ).lastrowid
                assert new_id is not None
                alert_id: int = new_id
            else:
                step = lc.raised_again(load(row), now_ns, suppressed=suppressed)
                alert_id = row["id"]
                db.execute("UPDATE alerts SET value = ?, message_en = ?, message_ru = ?, severity = ? WHERE id = ?",
                           (value_json, *message, severity, alert_id))
            row = self._persist(db, alert_id, step, now_ns)
        return self._after(row, step.transition or "repeated", now_ns)

    def clear(self, *, rule: str, machine: str, now_ns: int) -> dict[str, Any] | None:
        """The condition is gone: acknowledged (or suppressed) alerts close, others wait for acknowledgement."""
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM alerts WHERE rule = ? AND machine = ? AND closed_ns IS NULL AND active = 1",
                             (rule, machine)).fetchone()
            if row is None:
                return None
            step = lc.condition_cleared(load(row), now_ns)
            row = self._persist(db, row["id"], step, now_ns)
        return self._after(row, step.transition or "cleared", now_ns)

    def ack(self, alert_id: int, *, by: str, note: str, now_ns: int) -> dict[str, Any]:
        return self._change(alert_id, lambda a: lc.acknowledged(a, now_ns, by=by, note=note), now_ns, by=by)

    def shelve(self, alert_id: int, *, by: str, duration_s: float, note: str, now_ns: int) -> dict[str, Any]:
        return self._change(alert_id, lambda a: lc.shelved(a, now_ns, by=by, duration_s=duration_s, note=note),
                            now_ns, by=by, until=iso(now_ns + int(duration_s * NS)))

    def unshelve(self, alert_id: int, *, now_ns: int, by: str = "") -> dict[str, Any]:
        return self._change(alert_id, lambda a: lc.unshelved(a, now_ns), now_ns, by=by)

    def _change(self, alert_id: int, event: Callable[[Alert], Step], now_ns: int, **extra: Any) -> dict[str, Any]:
        """Apply `event` to one open alert; its new dict (unchanged when nothing happened)."""
        with self.store.transaction() as db:
            row = self._open(db, alert_id)
            step = event(load(row))
            if step.transition is None:
                return alert_dict(row)
            row = self._persist(db, alert_id, step, now_ns)
        return self._after(row, step.transition, now_ns, **extra)

    def set_suppressed(self, machine: str, suppressed: bool, now_ns: int) -> list[dict[str, Any]]:
        """The machine entered or left maintenance: suppress or release its open alerts."""
        changed: list[tuple[Row, str]] = []
        with self.store.transaction() as db:
            rows = db.execute("SELECT * FROM alerts WHERE machine = ? AND closed_ns IS NULL AND suppressed = ?",
                              (machine, int(not suppressed))).fetchall()
            for row in rows:
                a = load(row)
                step = lc.suppressed(a) if suppressed else lc.unsuppressed(a, now_ns)
                if step.transition is not None:
                    changed.append((self._persist(db, row["id"], step, now_ns), step.transition))
        return [self._after(row, transition, now_ns) for row, transition in changed]

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        """Auto-unshelve alerts whose shelving period is over."""
        due = self.store.query("SELECT * FROM alerts WHERE closed_ns IS NULL AND shelved_until_ns IS NOT NULL "
                               "AND shelved_until_ns <= ?", (now_ns,))
        return [self.unshelve(r["id"], now_ns=now_ns, by="auto") for r in due if lc.shelve_over(load(r), now_ns)]

    def _open(self, db: Tx, alert_id: int) -> Row:
        row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert {alert_id}; GET /api/v1/alerts lists them")
        if row["closed_ns"] is not None:
            raise AlertClosed(f"alert {alert_id} is closed since {iso(row['closed_ns'])}; nothing to do")
        result: Row = row
        return result
