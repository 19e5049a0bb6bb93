"""The usage ledger at runtime: entries built from the state engine's events as they happen, kept in the business
store (persist.py), surviving restarts.

- Every `state`, `job_start` and `job_end` event is added to its machine's buffer (the events since the start of
  the machine's current job); after each one, and every few seconds while a job is open (a long telemetry gap
  ends a session by itself, sessions.py), the buffer is folded into sessions and the finished ones are appended
  to the ledger. Entries are keyed by their session, so folding again (or after a restart) adds nothing twice.
- A restart: the events are in the business store already, and the last reading of every machine is saved every
  few seconds and at a clean stop. At start-up each machine's last job is replayed from the stored events, with a
  restart mark (restarts.py) at the last moment the stopped gateway knew about, so a job running across a
  restart stays one job and the downtime is a telemetry gap — never billed, never a second setup fee.
- A machine is declared offline some seconds after its last reading; the ledger takes the gap (and the end of a
  session it ends) from that reading, kept as a mark in the store like the restart marks.
- Check-ins (checkins.py: the API or badge swipes) give reserved time, running time outside jobs and the partner of
  jobs no rule names.
- Attribution is by the site file's rules (`billing.attribution`), then by check-in; entries neither matched are
  listed by
  `unattributed()` until an admin assigns them (`assign`, a compensating pair with who and when).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from gateway.billing.attribution import Attributor
from gateway.billing.checkins import CheckIns
from gateway.billing.ledger import LedgerEntry, assign, entry_from_session
from gateway.billing.persist import LedgerStore
from gateway.billing.restarts import continue_after_restart, is_mark, restart_mark
from gateway.billing.sessions import fold_sessions
from gateway.config.billing import BillingSection
from gateway.state.events import Event
from gateway.store import Store

log = logging.getLogger(__name__)

NS = 1_000_000_000
TYPES = ("state", "job_start", "job_end")
LAST_SEEN_KEY = "billing_last_seen_ns"
CHECK_EVERY_NS = 10 * NS
DEFAULT_GRACE_S = 300.0
LAST_READING_BASIS = "last reading"

MARKS_SCHEMA = ("CREATE TABLE IF NOT EXISTS billing_marks (machine TEXT NOT NULL, ts_ns INTEGER NOT NULL, "
                "data TEXT NOT NULL, PRIMARY KEY (machine, ts_ns))",)


class UnknownEntry(LookupError):
    pass


class NotAssignable(ValueError):
    """The partner or project of an assignment is not known (or does not fit)."""


class AlreadyAttributed(NotAssignable):
    """The entry has a partner already, or was assigned or corrected before."""


@dataclass(slots=True)
class _Machine:
    events: list[Event] = field(default_factory=list)
    open_job: bool = False
    last_seen_ns: int | None = None


class UsageLedger:
    """Ledger entries from the events of the machines in `machines`, in the store's `ledger` table."""

    def __init__(self, store: Store, billing: BillingSection | None, machines: Sequence[str],
                 clock: Callable[[], int], *, emit: Callable[[Event], None] | None = None,
                 energy: Callable[[str], float | None] | None = None) -> None:
        self.store = store
        self.ledger = LedgerStore(store)
        for sql in MARKS_SCHEMA:
            store.execute(sql)
        self.billing = billing
        self.grace_s = billing.gap_grace_s if billing is not None else DEFAULT_GRACE_S
        self.attributor = Attributor(billing.attribution if billing is not None else ())
        self.clock = clock
        self._m: dict[str, _Machine] = {mid: _Machine() for mid in machines}
        self._checked_ns = 0
        self.checkins = CheckIns(store, lambda: self.billing, emit=emit or (lambda _e: None),
                                 energy=energy or (lambda _m: None), record=lambda e: self._add([e]),
                                 clock=clock)
        self._replay()

    # --- start-up -------------------------------------------------------------------------------------------
    def _replay(self) -> None:
        """Rebuild each machine's buffer from the stored events of its last job, with a restart mark when that
        job was still open when the gateway stopped; record what the replay finishes."""
        saved = self.store.get_json(LAST_SEEN_KEY) or {}
        for mid, m in self._m.items():
            since = self._last_job_since(mid)
            if since is None:
                last = self._last_state(mid, None)
                m.events = [last] if last is not None else []
                continue
            before = self._last_state(mid, since)
            events = [*([before] if before is not None else []), *self._stored(mid, since)]
            if _job_open(events):
                seen = saved.get(mid)
                last_ts = max(e.ts_ns for e in events)
                # just after the last event: at the same instant the mark would sort among the machine's own events
                mark = restart_mark(mid, max(last_ts + 1, seen) if isinstance(seen, int) else last_ts + 1)
                self._mark(mark)
                events.append(mark)
            m.events = list({(e.ts_ns, e.type, json.dumps(e.data, sort_keys=True)): e for e in events}.values())
            self._record(mid)
            log.info("usage ledger: replayed the last job of %s", mid, extra={"machine": mid, "open": m.open_job})

    def _last_job_since(self, machine: str) -> int | None:
        """Where the machine's last job began: its first start after the job end that precedes its last start (a
        job re-announced after a restart has two starts and no end between them); None when it never ran one."""
        last = self.store.one("SELECT MAX(ts_ns) AS ts FROM events WHERE machine = ? AND type = 'job_start'",
                              (machine,))
        if last is None or last["ts"] is None:
            return None
        end = self.store.one("SELECT MAX(ts_ns) AS ts FROM events WHERE machine = ? AND type = 'job_end' "
                             "AND ts_ns <= ?", (machine, last["ts"]))
        first = self.store.one("SELECT MIN(ts_ns) AS ts FROM events WHERE machine = ? AND type = 'job_start' "
                               "AND ts_ns >= ?", (machine, end["ts"] if end is not None and end["ts"] is not None
                                                  else 0))
        return int(first["ts"]) if first is not None and first["ts"] is not None else int(last["ts"])

    def _last_state(self, machine: str, before_ns: int | None) -> Event | None:
        sql = "SELECT ts_ns, data FROM events WHERE machine = ? AND type = 'state'"
        params: list[object] = [machine]
        if before_ns is not None:
            sql += " AND ts_ns < ?"
            params.append(before_ns)
        row = self.store.one(sql + " ORDER BY ts_ns DESC, id DESC LIMIT 1", params)
        return Event(row["ts_ns"], machine, "state", json.loads(row["data"])) if row is not None else None

    def _stored(self, machine: str, since_ns: int) -> list[Event]:
        rows = self.store.query("SELECT ts_ns, type, data FROM events WHERE machine = ? AND ts_ns >= ? AND type IN "
                                "('state', 'job_start', 'job_end') ORDER BY ts_ns, id", (machine, since_ns))
        marks = self.store.query("SELECT ts_ns, data FROM billing_marks WHERE machine = ? AND ts_ns >= ?",
                                 (machine, since_ns))
        return [*(Event(r["ts_ns"], machine, r["type"], json.loads(r["data"])) for r in rows),
                *(Event(r["ts_ns"], machine, "state", json.loads(r["data"])) for r in marks)]

    # --- as it happens --------------------------------------------------------------------------------------
    def on_event(self, event: Event, *, last_seen_ns: int | None = None) -> None:
        """An event of the state engine; `last_seen_ns` is the machine's last reading when it happened."""
        m = self._m.get(event.machine)
        if m is not None and event.type == "badge":
            self.checkins.on_badge(event)
            return
        if m is None or event.type not in TYPES:
            return
        if (event.type == "state" and event.data.get("to") == "offline" and "last_seen_ns" not in event.data
                and last_seen_ns is not None and last_seen_ns < event.ts_ns and m.open_job):
            # the machine is declared offline some seconds after its last reading: the gap (and a session it
            # ends) starts at that reading — kept as a mark, so that a replay sees the same
            mark = Event(last_seen_ns, event.machine, "state", {"to": "offline", "last_seen_ns": last_seen_ns,
                                                                "basis": LAST_READING_BASIS})
            self._mark(mark)
            m.events.append(mark)
        m.events.append(event)
        self._record(event.machine)

    def _mark(self, mark: Event) -> None:
        self.store.execute("INSERT INTO billing_marks (machine, ts_ns, data) VALUES (?, ?, ?) "
                           "ON CONFLICT (machine, ts_ns) DO NOTHING",
                           (mark.machine, mark.ts_ns, json.dumps(mark.data, sort_keys=True)))

    def on_seen(self, machine: str, last_seen_ns: int | None) -> None:
        m = self._m.get(machine)
        if m is not None and last_seen_ns is not None:
            m.last_seen_ns = last_seen_ns

    def tick(self, now_ns: int) -> None:
        """Every few seconds: finish sessions ended by a long gap, and save the machines' last readings."""
        if now_ns - self._checked_ns < CHECK_EVERY_NS:
            return
        self._checked_ns = now_ns
        self.checkins.expire(now_ns)
        for mid, m in self._m.items():
            if m.open_job:
                self._record(mid)
        self.save()

    def save(self) -> None:
        """Keep the last reading of every machine (where a restart mark goes)."""
        seen = {mid: m.last_seen_ns for mid, m in self._m.items() if m.last_seen_ns is not None}
        if seen:
            self.store.put_json(LAST_SEEN_KEY, seen)

    def _record(self, machine: str) -> None:
        m = self._m[machine]
        finished, _ = fold_sessions(continue_after_restart(m.events), grace_s=self.grace_s, now_ns=self.clock())
        entries = [self._attributed(entry_from_session(s, self.attributor)) for s in finished]
        m.open_job = _job_open(m.events)
        self._add(entries)
        if not m.open_job:
            # nothing open: keep only what the next job needs to know (the machine's last state)
            states = [e for e in m.events if e.type == "state" and not is_mark(e)
                      and e.data.get("basis") != LAST_READING_BASIS]
            m.events = [max(states, key=lambda e: e.ts_ns)] if states else []

    def _attributed(self, entry: LedgerEntry) -> LedgerEntry:
        """A job no attribution rule names is its check-in's, when it started during one."""
        if entry.partner is not None:
            return entry
        ci = self.checkins.covering(entry.machine, entry.job_start_ns)
        if ci is None:
            return entry
        return replace(entry, partner=ci.partner, project=ci.project, user=ci.user,
                       note=f"check-in {ci.id} of {ci.user or ci.partner}")

    def _add(self, entries: Sequence[LedgerEntry]) -> None:
        if entries and (added := self.ledger.add(entries)):
            log.info("usage ledger: %d new entries of %s", added, entries[0].machine,
                     extra={"machine": entries[0].machine})

    # --- reading and correcting -----------------------------------------------------------------------------
    def entries(self, *, partner: str | None = None, start_ns: int | None = None,
                end_ns: int | None = None) -> list[LedgerEntry]:
        return self.ledger.entries(partner=partner, start_ns=start_ns, end_ns=end_ns)

    def get(self, key: str) -> LedgerEntry:
        entry = self.ledger.get(key)
        if entry is None:
            raise UnknownEntry(f"no ledger entry '{key}'; GET /api/v1/usage?unattributed=true lists the open ones")
        return entry

    def unattributed(self) -> list[LedgerEntry]:
        """Usage with no partner that has not been assigned (or withdrawn) yet, oldest first."""
        return self.ledger.unattributed()

    def assign(self, key: str, *, partner: str, project: str | None, by: str) -> tuple[LedgerEntry, LedgerEntry]:
        """Attribute an unattributed entry to a partner (and project): an audited compensating pair."""
        entry = self.get(key)
        b = self.billing
        if b is None or partner not in {p.id for p in b.partners}:
            known = ", ".join(sorted(p.id for p in b.partners)) if b is not None else "none"
            raise NotAssignable(f'"{partner}" is not a known partner (known: {known})')
        if project is not None:
            owner = next((p.partner for p in b.projects if p.id == project), None)
            if owner != partner:
                raise NotAssignable(f'"{project}" is not a project of partner "{partner}"')
        if entry.sign < 0 or entry.partner is not None:
            raise AlreadyAttributed(f"entry '{key}' is attributed already (partner {entry.partner}); only unattributed "
                                "usage can be assigned")
        if self.ledger.corrected(key):
            raise AlreadyAttributed(f"entry '{key}' was assigned or corrected already")
        rev, fixed = assign(entry, partner=partner, project=project, recorded_ns=self.clock(), by=by)
        self.ledger.add([rev, fixed])
        return rev, fixed


def _job_open(events: Iterable[Event]) -> bool:
    """Whether the machine's last job event is a start (the job is running, paused or in a telemetry gap)."""
    jobs = [e for e in events if e.type in ("job_start", "job_end")]
    return bool(jobs) and max(jobs, key=lambda e: (e.ts_ns, e.type == "job_start")).type == "job_start"
