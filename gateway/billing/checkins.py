"""Check-in and check-out: who has a machine, from when to when — through the API (a kiosk, a technician) or a
badge swipe at the machine.

- A check-in is opened on a machine for a user (who works for a partner; the project is the user's default unless
  one is given) or, by an admin, directly for a partner and project. A machine has at most one open check-in.
- A badge swipe (the state engine's `badge` event, from a reader over serial or MQTT) of user U: with no open
  check-in U checks in; with U's own, U checks out; with someone else's, that one is closed and U checks in (a
  handover). A badge no user has changes nothing: it is logged and counted (`unknown_badges`).
- A check-in still open `billing.checkin_max_h` after it began is closed at that limit, so a forgotten check-out
  never bills the night.
- Check-ins and check-outs are events (`check_in`, `check_out`): they are in the store, on the machine's timeline
  and in Grafana's annotations.

On check-out the check-in becomes one ledger entry (source `checkin`, key `checkin/<id>`, recorded at its end):
- reserved time: checked in while the machine was not running (billed at the rate card's reserved-hour price,
  when it has one);
- running time outside jobs: a machine without job signals (a laser cutter on a smart plug) is billed for its
  running time while checked in; running time inside a job is the job's own entry, never billed twice;
- energy metered during the check-in and not inside a job (jobs carry their own);
- per-job amounts (setup fee, minimum charge) only when no job ran during the check-in (then the check-in is the
  unit of work; segment 0), else it is an addition to the jobs (segment 1).
Jobs that start during a check-in are billed to its user's partner when no attribution rule names one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from gateway.billing.ledger import LedgerEntry
from gateway.billing.sessions import Span
from gateway.config.billing import BillingSection
from gateway.state.events import Event
from gateway.store import Store

log = logging.getLogger(__name__)

NS = 1_000_000_000
HOUR_NS = 3600 * NS

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS checkins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine TEXT NOT NULL,
    user TEXT,
    partner TEXT NOT NULL,
    project TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    via TEXT NOT NULL,
    by TEXT NOT NULL,
    closed_by TEXT,
    energy_start_kwh REAL,
    energy_end_kwh REAL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS checkins_open ON checkins (machine) WHERE end_ns IS NULL",
    "CREATE INDEX IF NOT EXISTS checkins_by_machine ON checkins (machine, start_ns)",
)


class CheckInError(ValueError):
    """A check-in that cannot be made (unknown user, partner or project; billing not configured)."""


class AlreadyCheckedIn(CheckInError):
    pass


class NotCheckedIn(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class CheckIn:
    id: int
    machine: str
    user: str | None
    partner: str
    project: str | None
    start_ns: int
    end_ns: int | None
    via: str  # api | badge
    by: str
    closed_by: str | None = None
    energy_start_kwh: float | None = None
    energy_end_kwh: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- pure: the ledger entry of a finished check-in ------------------------------------------------------------
def running_spans(before: str | None, states: Sequence[tuple[int, str]], start_ns: int, end_ns: int) -> list[Span]:
    """When the machine was running within [start, end]: its state before the start, then its changes."""
    out: list[Span] = []
    since = start_ns if before == "running" else None
    for ts, to in states:
        ts = min(max(ts, start_ns), end_ns)
        if to == "running":
            since = ts if since is None else since
        elif since is not None:
            out.append((since, ts))
            since = None
    if since is not None:
        out.append((since, end_ns))
    return [(s, e) for s, e in out if e > s]


def job_spans(events: Sequence[tuple[int, str]], start_ns: int, end_ns: int, *, open_before: bool) -> list[Span]:
    """When a job was on within [start, end], from `job_start` / `job_end` events (a start re-announced after a
    restart, without an end between, continues the job); `open_before`: a job was on at the start."""
    out: list[Span] = []
    since = start_ns if open_before else None
    for ts, type_ in events:
        ts = min(max(ts, start_ns), end_ns)
        if type_ == "job_start":
            since = ts if since is None else since
        elif type_ == "job_end" and since is not None:
            out.append((since, ts))
            since = None
    if since is not None:
        out.append((since, end_ns))
    return [(s, e) for s, e in out if e > s]


def subtract(spans: Sequence[Span], minus: Sequence[Span]) -> list[Span]:
    """The parts of `spans` outside every span of `minus` (both sorted, non-overlapping within themselves)."""
    out: list[Span] = []
    for s, e in spans:
        cur = s
        for ms, me in minus:
            if me <= cur or ms >= e:
                continue
            if ms > cur:
                out.append((cur, ms))
            cur = max(cur, me)
        if cur < e:
            out.append((cur, e))
    return out


def checkin_entry(ci: CheckIn, *, running: Sequence[Span], jobs: Sequence[Span],
                  job_energy_kwh: float) -> LedgerEntry:
    """The ledger entry of a finished check-in (see the module text)."""
    assert ci.end_ns is not None
    whole = [(ci.start_ns, ci.end_ns)] if ci.end_ns > ci.start_ns else []
    metered = (ci.energy_end_kwh - ci.energy_start_kwh
               if ci.energy_start_kwh is not None and ci.energy_end_kwh is not None else 0.0)
    energy = max(0.0, round(metered - job_energy_kwh, 6))
    who = ci.user or ci.partner
    return LedgerEntry(
        key=f"checkin/{ci.id}", machine=ci.machine, job=f"check-in {who}", job_start_ns=ci.start_ns,
        segment=1 if jobs else 0, start_ns=ci.start_ns, end_ns=ci.end_ns, recorded_ns=ci.end_ns, source="checkin",
        running=tuple(subtract(running, jobs)), reserved=tuple(subtract(whole, running)),
        energy_kwh=Decimal(str(energy)), partner=ci.partner, project=ci.project, user=ci.user,
        by=ci.by, note=f"check-in {ci.id} via {ci.via} by {ci.by}, closed by {ci.closed_by}")


# --- the check-ins of a gateway --------------------------------------------------------------------------------
class CheckIns:
    """Check-ins in the business store. `emit` sends the `check_in` / `check_out` events; `energy` reads a
    machine's energy counter (kWh, None without a meter); `record` appends a finished check-in's entry."""

    def __init__(self, store: Store, billing: Callable[[], BillingSection | None], *,
                 emit: Callable[[Event], None], energy: Callable[[str], float | None],
                 record: Callable[[LedgerEntry], None], clock: Callable[[], int]) -> None:
        self.store = store
        for sql in SCHEMA:
            store.execute(sql)
        self.billing = billing
        self.emit = emit
        self.energy = energy
        self.record = record
        self.clock = clock
        self.unknown_badges = 0

    # --- reading ---------------------------------------------------------------------------------------------
    def _of(self, row: Any) -> CheckIn:
        return CheckIn(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)

    def get(self, checkin_id: int) -> CheckIn:
        row = self.store.one("SELECT * FROM checkins WHERE id = ?", (checkin_id,))
        if row is None:
            raise NotCheckedIn(f"no check-in {checkin_id}")
        return self._of(row)

    def open_on(self, machine: str) -> CheckIn | None:
        row = self.store.one("SELECT * FROM checkins WHERE machine = ? AND end_ns IS NULL", (machine,))
        return self._of(row) if row is not None else None

    def covering(self, machine: str, ts_ns: int) -> CheckIn | None:
        """The check-in the machine was under at `ts_ns` (a job starting then is its user's)."""
        row = self.store.one("SELECT * FROM checkins WHERE machine = ? AND start_ns <= ? AND (end_ns IS NULL OR "
                             "end_ns > ?) ORDER BY start_ns DESC LIMIT 1", (machine, ts_ns, ts_ns))
        return self._of(row) if row is not None else None

    def list(self, *, machine: str | None = None, partner: str | None = None, open_only: bool = False,
             start_ns: int | None = None, end_ns: int | None = None, limit: int = 500) -> list[CheckIn]:
        where, params = ["1 = 1"], list[Any]()
        for cond, value in (("machine = ?", machine), ("partner = ?", partner), ("start_ns < ?", end_ns),
                            ("(end_ns IS NULL OR end_ns >= ?)", start_ns)):
            if value is not None:
                where.append(cond)
                params.append(value)
        if open_only:
            where.append("end_ns IS NULL")
        rows = self.store.query(f"SELECT * FROM checkins WHERE {' AND '.join(where)} "  # noqa: S608
                                "ORDER BY start_ns DESC, id DESC LIMIT ?", [*params, limit])
        return [self._of(r) for r in rows]

    # --- changing --------------------------------------------------------------------------------------------
    def _who(self, user: str | None, partner: str | None, project: str | None) -> tuple[str | None, str, str | None]:
        b = self.billing()
        if b is None:
            raise CheckInError("billing is not configured on this gateway (no billing section in the site file)")
        if user is not None:
            try:
                u = b.user(user)
            except KeyError:
                known = ", ".join(sorted(x.id for x in b.users)) or "none"
                raise CheckInError(f'"{user}" is not a user under billing.users (known: {known})') from None
            if partner is not None and partner != u.partner:
                raise CheckInError(f'user "{user}" works for partner "{u.partner}", not "{partner}"')
            partner, project = u.partner, project or u.project
        if partner is None:
            raise CheckInError("a check-in needs a user (or, for an admin, a partner)")
        if partner not in {p.id for p in b.partners}:
            known = ", ".join(sorted(p.id for p in b.partners)) or "none"
            raise CheckInError(f'"{partner}" is not a known partner (known: {known})')
        if project is not None and next((p.partner for p in b.projects if p.id == project), None) != partner:
            raise CheckInError(f'"{project}" is not a project of partner "{partner}"')
        return user, partner, project

    def check_in(self, machine: str, *, by: str, user: str | None = None, partner: str | None = None,
                 project: str | None = None, via: str = "api", at_ns: int | None = None) -> CheckIn:
        user, partner, project = self._who(user, partner, project)
        now = self.clock() if at_ns is None else at_ns
        current = self.open_on(machine)
        if current is not None:
            raise AlreadyCheckedIn(f"{machine} is checked in already (check-in {current.id} of "
                                   f"{current.user or current.partner} since {current.start_ns}); check out first")
        with self.store.transaction() as db:
            cur = db.execute("INSERT INTO checkins (machine, user, partner, project, start_ns, via, by, "
                             "energy_start_kwh) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (machine, user, partner, project, now, via, by, self.energy(machine)))
            ci_id = int(cur.lastrowid or 0)
        ci = self.get(ci_id)
        log.info("billing: %s checked in to %s (%s)", user or partner, machine, via,
                 extra={"machine": machine, "checkin": ci_id, "partner": partner})
        self.emit(Event(now, machine, "check_in", {"checkin": ci_id, "user": user, "partner": partner,
                                                   "project": project, "via": via, "by": by}))
        return ci

    def check_out(self, machine: str, *, by: str, via: str = "api", at_ns: int | None = None) -> CheckIn:
        ci = self.open_on(machine)
        if ci is None:
            raise NotCheckedIn(f"{machine} is not checked in")
        return self._close(ci, by=by, via=via, at_ns=self.clock() if at_ns is None else at_ns)

    def _close(self, ci: CheckIn, *, by: str, via: str, at_ns: int) -> CheckIn:
        end = max(at_ns, ci.start_ns)
        self.store.execute("UPDATE checkins SET end_ns = ?, closed_by = ?, energy_end_kwh = ? WHERE id = ? AND "
                           "end_ns IS NULL", (end, by, self.energy(ci.machine), ci.id))
        done = self.get(ci.id)
        self.emit(Event(end, ci.machine, "check_out", {"checkin": ci.id, "user": ci.user, "partner": ci.partner,
                                                       "via": via, "by": by,
                                                       "duration_s": round((end - ci.start_ns) / NS, 3)}))
        self.record(self.entry_of(done))
        log.info("billing: check-in %d on %s closed (%s)", ci.id, ci.machine, via,
                 extra={"machine": ci.machine, "checkin": ci.id})
        return done

    def entry_of(self, ci: CheckIn) -> LedgerEntry:
        """The ledger entry of a finished check-in, from the machine's stored events."""
        assert ci.end_ns is not None
        s, e, m = ci.start_ns, ci.end_ns, ci.machine
        before = self.store.one("SELECT data FROM events WHERE machine = ? AND type = 'state' AND ts_ns <= ? "
                                "ORDER BY ts_ns DESC, id DESC LIMIT 1", (m, s))
        states = [(r["ts_ns"], json.loads(r["data"]).get("to")) for r in self.store.query(
            "SELECT ts_ns, data FROM events WHERE machine = ? AND type = 'state' AND ts_ns > ? AND ts_ns < ? "
            "ORDER BY ts_ns, id", (m, s, e))]
        last_job = self.store.one("SELECT type FROM events WHERE machine = ? AND type IN ('job_start', 'job_end') "
                                  "AND ts_ns <= ? ORDER BY ts_ns DESC, id DESC LIMIT 1", (m, s))
        job_rows = self.store.query("SELECT ts_ns, type, data FROM events WHERE machine = ? AND type IN "
                                    "('job_start', 'job_end') AND ts_ns > ? AND ts_ns <= ? ORDER BY ts_ns, id",
                                    (m, s, e))
        running = running_spans(json.loads(before["data"]).get("to") if before is not None else None, states, s, e)
        jobs = job_spans([(r["ts_ns"], r["type"]) for r in job_rows], s, e,
                         open_before=last_job is not None and last_job["type"] == "job_start")
        job_kwh = sum(float(json.loads(r["data"]).get("energy_kwh") or 0) for r in job_rows
                      if r["type"] == "job_end")
        return checkin_entry(ci, running=running, jobs=jobs, job_energy_kwh=job_kwh)

    def on_badge(self, event: Event) -> None:
        """A badge swipe at a machine (see the module text)."""
        b = self.billing()
        badge = str(event.data.get("badge", ""))
        user = b.badge_user(badge) if b is not None else None
        if user is None:
            self.unknown_badges += 1
            log.warning("billing: badge %r swiped at %s belongs to no user under billing.users; nothing changed",
                        badge, event.machine, extra={"machine": event.machine})
            return
        current = self.open_on(event.machine)
        if current is not None:
            self._close(current, by=user.id, via="badge", at_ns=event.ts_ns)
            if current.user == user.id:
                return
        self.check_in(event.machine, by=user.id, user=user.id, via="badge", at_ns=event.ts_ns)

    def expire(self, now_ns: int) -> None:
        """Close check-ins open longer than `billing.checkin_max_h`, at that limit."""
        b = self.billing()
        if b is None:
            return
        limit = int(b.checkin_max_h * HOUR_NS)
        for ci in self.list(open_only=True):
            if now_ns - ci.start_ns > limit:
                log.warning("billing: check-in %d on %s was open for %.0f h; closed at the limit "
                            "(billing.checkin_max_h)", ci.id, ci.machine, b.checkin_max_h,
                            extra={"machine": ci.machine, "checkin": ci.id})
                self._close(ci, by="gateway", via="limit", at_ns=ci.start_ns + limit)
