"""The usage ledger: append-only entries, one per session, with a stable idempotency key.

- An entry built from events has the key of its session (`machine/job-start-ns/segment`), `source: events`, and
  is recorded at the session's end — nothing in it depends on when or how often the events were replayed, so
  adding the entries of a replay changes nothing (`Ledger.add` keeps the first entry of a key).
- Entries are never edited. A correction is a pair: a reversal (`sign: -1`, `reverses:` the corrected key, key
  `<key>~rev`) and, unless the usage is simply withdrawn, a replacement (key `<key>~fix@<recorded-ns>`) with the
  corrected fields. Assigning unattributed usage to a partner is such a correction, with `source: assignment`;
  who did it and why is in the entries' `by` and `note` (the audit trail).
- An entry is billed in the month its usage fell in, unless that month was closed before the entry was recorded
  (see periods.billed_month): a late correction lands in the next open month.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from gateway.billing.attribution import Attributor
from gateway.billing.sessions import Session, Span, fold_sessions
from gateway.state.events import Event

SOURCES = ("events", "checkin", "correction", "assignment")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    machine: str
    job: str
    job_start_ns: int
    segment: int
    start_ns: int
    end_ns: int
    recorded_ns: int
    source: str
    running: tuple[Span, ...] = ()
    reserved: tuple[Span, ...] = ()
    job_id: str | None = None
    material: str | None = None
    material_m: Decimal = Decimal(0)
    material_g: Decimal = Decimal(0)
    units: Decimal = Decimal(0)
    energy_kwh: Decimal = Decimal(0)
    partner: str | None = None
    project: str | None = None
    user: str | None = None
    sign: int = 1
    reverses: str | None = None
    by: str = ""
    note: str = ""

    @property
    def running_ns(self) -> int:
        return sum(e - s for s, e in self.running)

    @property
    def reserved_ns(self) -> int:
        return sum(e - s for s, e in self.reserved)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (decimals as text, spans as [start, end] pairs)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            v = getattr(self, name)
            out[name] = str(v) if isinstance(v, Decimal) else [list(s) for s in v] if name in (
                "running", "reserved") else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LedgerEntry:
        kw = dict(d)
        for name in ("material_m", "material_g", "units", "energy_kwh"):
            kw[name] = Decimal(str(kw.get(name, 0)))
        for name in ("running", "reserved"):
            kw[name] = tuple((int(s), int(e)) for s, e in kw.get(name, ()))
        return cls(**kw)


def entry_from_session(s: Session, attributor: Attributor) -> LedgerEntry:
    who = attributor.attribute(s.machine, s.job)
    return LedgerEntry(
        key=s.key, machine=s.machine, job=s.job, job_id=s.job_id, job_start_ns=s.job_start_ns, segment=s.segment,
        start_ns=s.start_ns, end_ns=s.end_ns, recorded_ns=s.end_ns, source="events", running=s.running,
        material=s.material, material_m=Decimal(str(s.material_m)), energy_kwh=Decimal(str(s.energy_kwh)),
        partner=who.partner if who else None, project=who.project if who else None,
        note=f"attribution rule {who.rule}" if who else "unattributed")


def entries_from_events(events: Iterable[Event], attributor: Attributor, *, grace_s: float,
                        now_ns: int | None = None) -> list[LedgerEntry]:
    """Ledger entries of every finished session in the events (see sessions.fold_sessions)."""
    finished, _ = fold_sessions(events, grace_s=grace_s, now_ns=now_ns)
    return [entry_from_session(s, attributor) for s in finished]


def reversal(entry: LedgerEntry, *, recorded_ns: int, by: str, note: str, source: str = "correction") -> LedgerEntry:
    """The entry that cancels `entry` (same usage, sign -1)."""
    if entry.sign < 0:
        raise ValueError(f"entry {entry.key} is itself a reversal; correct the entry it reverses instead")
    return replace(entry, key=f"{entry.key}~rev", sign=-1, reverses=entry.key, recorded_ns=recorded_ns,
                   source=source, by=by, note=note)


def correct(entry: LedgerEntry, *, recorded_ns: int, by: str, note: str, source: str = "correction",
            **changes: Any) -> tuple[LedgerEntry, LedgerEntry]:
    """(reversal, replacement): the compensating pair that replaces `entry` by a copy with `changes`."""
    for name in ("key", "sign", "reverses", "recorded_ns", "source"):
        if name in changes:
            raise ValueError(f"{name} of a correction is set by the ledger, not by the caller")
    fixed = replace(entry, **changes, key=f"{entry.key}~fix@{recorded_ns}", recorded_ns=recorded_ns,
                    source=source, by=by, note=note, sign=1, reverses=None)
    return reversal(entry, recorded_ns=recorded_ns, by=by, note=note, source=source), fixed


def assign(entry: LedgerEntry, *, partner: str, project: str | None, recorded_ns: int,
           by: str) -> tuple[LedgerEntry, LedgerEntry]:
    """Attribute usage to a partner (and project) after the fact, as an audited compensating pair."""
    return correct(entry, recorded_ns=recorded_ns, by=by, source="assignment", partner=partner, project=project,
                   note=f"assigned to {partner}" + (f"/{project}" if project else "") + f" by {by}")


class Ledger:
    """In-memory, append-only, idempotent by key."""

    def __init__(self, entries: Iterable[LedgerEntry] = ()) -> None:
        self._by_key: dict[str, LedgerEntry] = {}
        self.add_all(entries)

    def add(self, entry: LedgerEntry) -> bool:
        """Append; False (and nothing changes) when an entry with the same key is already there."""
        if entry.key in self._by_key:
            return False
        self._by_key[entry.key] = entry
        return True

    def add_all(self, entries: Iterable[LedgerEntry]) -> int:
        return sum(1 for e in entries if self.add(e))

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: str) -> LedgerEntry:
        return self._by_key[key]

    def entries(self) -> list[LedgerEntry]:
        """Every entry, in the order they were recorded (then by key)."""
        return sorted(self._by_key.values(), key=lambda e: (e.recorded_ns, e.key))

    def reversed_keys(self) -> set[str]:
        return {e.reverses for e in self._by_key.values() if e.reverses is not None}

    def unattributed(self) -> list[LedgerEntry]:
        """Usage with no partner that has not been assigned (or withdrawn) yet."""
        gone = self.reversed_keys()
        return [e for e in self.entries() if e.partner is None and e.sign > 0 and e.key not in gone]
