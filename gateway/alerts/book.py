"""The alert lifecycle after ISA-18.2, kept in the business store.

States of one alert (rule x machine):

    active_unacknowledged --ack--> acknowledged --condition clears--> closed
    active_unacknowledged --condition clears--> cleared_unacknowledged --ack--> closed
    any open state --shelve--> shelved --period over / unshelve--> back (closed if it cleared meanwhile)
    any open state --machine in maintenance--> suppressed --maintenance over--> back (closed if it cleared)

While an alert is open, a new occurrence of its condition does not open another alert: it raises the count (and
needs a new acknowledgement). Notifications go out when an alert is raised and — flood protection — at most
once per rule and machine per `notify_window_s`; shelved and suppressed alerts notify nobody, but are notified
when they come back still active and unacknowledged. Notifications are written to the outbox in the same
transaction as the alert, so a restart neither loses nor repeats them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from gateway.config.operations import SEVERITY_RANK, Channel
from gateway.errors import KartechError
from gateway.notify.routing import routes
from gateway.state.events import Event
from gateway.state.model import iso
from gateway.store import Row, Store, Tx

NS = 1_000_000_000
STATES = ("active_unacknowledged", "acknowledged", "cleared_unacknowledged", "shelved", "suppressed", "closed")
OPEN_STATES = STATES[:-1]


class AlertNotFound(KartechError):
    """No alert with this id."""


class AlertClosed(KartechError):
    """The alert is closed; nothing more can be done with it."""


def state_of(row: Row) -> str:
    if row["closed_ns"] is not None:
        return "closed"
    if row["shelved_until_ns"] is not None:
        return "shelved"
    if row["suppressed"]:
        return "suppressed"
    if row["active"]:
        return "acknowledged" if row["acked"] else "active_unacknowledged"
    return "cleared_unacknowledged"


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

    def _notify(self, db: Tx, row: Row, transition: str, now_ns: int) -> int:
        """Queue notifications for this transition (respecting the flood window); how many were queued."""
        targets = routes(self.channels, severity=row["severity"], lab=row["lab"], transition=transition)
        if not targets:
            return 0
        if transition != "cleared":
            last = db.execute("SELECT last_ns FROM notify_window WHERE rule = ? AND machine = ?",
                              (row["rule"], row["machine"])).fetchone()
            if last is not None and now_ns - last["last_ns"] < self.window_ns:
                return 0
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
                alert_id = db.execute(
                    "INSERT INTO alerts (rule, machine, lab, severity, active, suppressed, raised_ns, last_raised_ns,"
                    " value, message_en, message_ru) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                    (rule, machine, lab, severity, int(suppressed), now_ns, now_ns, value_json, *message),
                ).lastrowid
                transition = "raised"
            else:
                alert_id = row["id"]
                db.execute("UPDATE alerts SET active = 1, acked = 0, acked_ns = NULL, acked_by = NULL, "
                           "ack_note = NULL, cleared_ns = NULL, count = count + 1, last_raised_ns = ?, value = ?, "
                           "message_en = ?, message_ru = ?, suppressed = ?, severity = ? WHERE id = ?",
                           (now_ns, value_json, *message, int(suppressed), severity, alert_id))
                transition = "repeated"
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if suppressed or row["shelved_until_ns"] is not None:
                db.execute("UPDATE alerts SET notify_pending = 1 WHERE id = ?", (alert_id,))
            else:
                self._notify(db, row, transition, now_ns)
        return self._after(row, transition, now_ns)

    def clear(self, *, rule: str, machine: str, now_ns: int) -> dict[str, Any] | None:
        """The condition is gone: acknowledged (or suppressed) alerts close, others wait for acknowledgement."""
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM alerts WHERE rule = ? AND machine = ? AND closed_ns IS NULL AND active = 1",
                             (rule, machine)).fetchone()
            if row is None:
                return None
            closes = bool(row["acked"]) or bool(row["suppressed"])
            db.execute("UPDATE alerts SET active = 0, cleared_ns = ?, notify_pending = 0, closed_ns = ? "
                       "WHERE id = ?", (now_ns, now_ns if closes else None, row["id"]))
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (row["id"],)).fetchone()
            if row["shelved_until_ns"] is None and not row["suppressed"]:
                self._notify(db, row, "cleared", now_ns)
        return self._after(row, "closed" if closes else "cleared", now_ns)

    def ack(self, alert_id: int, *, by: str, note: str, now_ns: int) -> dict[str, Any]:
        with self.store.transaction() as db:
            row = self._open(db, alert_id)
            if row["acked"]:
                return alert_dict(row)
            closes = not row["active"]
            db.execute("UPDATE alerts SET acked = 1, acked_ns = ?, acked_by = ?, ack_note = ?, notify_pending = 0, "
                       "closed_ns = ? WHERE id = ?", (now_ns, by, note, now_ns if closes else None, alert_id))
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return self._after(row, "acknowledged", now_ns, by=by)

    def shelve(self, alert_id: int, *, by: str, duration_s: float, note: str, now_ns: int) -> dict[str, Any]:
        with self.store.transaction() as db:
            self._open(db, alert_id)
            db.execute("UPDATE alerts SET shelved_until_ns = ?, shelved_by = ?, shelve_note = ? WHERE id = ?",
                       (now_ns + int(duration_s * NS), by, note, alert_id))
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return self._after(row, "shelved", now_ns, by=by, until=iso(row["shelved_until_ns"]))

    def unshelve(self, alert_id: int, *, now_ns: int, by: str = "") -> dict[str, Any]:
        with self.store.transaction() as db:
            row = self._open(db, alert_id)
            if row["shelved_until_ns"] is None:
                return alert_dict(row)
            row = self._return(db, row, now_ns, "shelved_until_ns = NULL")
        return self._after(row, "unshelved" if row["closed_ns"] is None else "closed", now_ns, by=by)

    def _return(self, db: Tx, row: Row, now_ns: int, change: str) -> Row:
        """Back from shelved or suppressed: closed if it cleared meanwhile, else shown (and notified) again."""
        closes = not row["active"]
        db.execute(f"UPDATE alerts SET {change}, closed_ns = ? WHERE id = ?",  # noqa: S608 - fixed fragments
                   (now_ns if closes else None, row["id"]))
        new: Row = db.execute("SELECT * FROM alerts WHERE id = ?", (row["id"],)).fetchone()
        if not closes and new["shelved_until_ns"] is None and not new["suppressed"] and not new["acked"] \
                and new["notify_pending"]:
            db.execute("UPDATE alerts SET notify_pending = 0 WHERE id = ?", (row["id"],))
            self._notify(db, new, "returned", now_ns)
        return new

    def set_suppressed(self, machine: str, suppressed: bool, now_ns: int) -> list[dict[str, Any]]:
        """The machine entered or left maintenance: suppress or release its open alerts."""
        changed: list[tuple[Row, str]] = []
        with self.store.transaction() as db:
            rows = db.execute("SELECT * FROM alerts WHERE machine = ? AND closed_ns IS NULL AND suppressed = ?",
                              (machine, int(not suppressed))).fetchall()
            for row in rows:
                if suppressed:
                    db.execute("UPDATE alerts SET suppressed = 1, notify_pending = CASE WHEN acked = 0 AND active = 1 "
                               "THEN 1 ELSE 0 END WHERE id = ?", (row["id"],))
                    new = db.execute("SELECT * FROM alerts WHERE id = ?", (row["id"],)).fetchone()
                    changed.append((new, "suppressed"))
                else:
                    new = self._return(db, row, now_ns, "suppressed = 0")
                    changed.append((new, "unsuppressed" if new["closed_ns"] is None else "closed"))
        return [self._after(row, transition, now_ns) for row, transition in changed]

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        """Auto-unshelve alerts whose shelving period is over."""
        due = self.store.query("SELECT id FROM alerts WHERE closed_ns IS NULL AND shelved_until_ns IS NOT NULL "
                               "AND shelved_until_ns <= ?", (now_ns,))
        return [self.unshelve(r["id"], now_ns=now_ns, by="auto") for r in due]

    def _open(self, db: Tx, alert_id: int) -> Row:
        row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert {alert_id}; GET /api/v1/alerts lists them")
        if row["closed_ns"] is not None:
            raise AlertClosed(f"alert {alert_id} is closed since {iso(row['closed_ns'])}; nothing to do")
        result: Row = row
        return result
