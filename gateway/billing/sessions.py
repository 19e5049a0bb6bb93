"""Usage sessions of jobs, folded from the state engine's events (`state`, `job_start`, `job_end`).

A session is the billable part of one job on one machine: the intervals the machine was `running` between the
job's start and its end. Rules of the fold:

- Events are a set: exact repeats (same machine, time, type and data) count once and the order they arrive in
  does not matter — they are sorted by time, and at one instant a state change comes before a job's end, which
  comes before the next job's start (the order the state engine emits them in).
- Material and energy used are what the job's end reports (the state engine counts them during the job); they
  go on the job's last session.
- Only running time is billed; paused, idle, error and offline time inside a job is not.
- A telemetry gap (the machine `offline`) no longer than `grace_s` neither splits the job nor is billed. A longer
  gap ends the session at the last reading (the offline event's `last_seen_ns` when it carries one, else the time
  the machine was declared offline); when telemetry comes back and the job is still going, the job continues in
  a new session (segment 1, 2, ...). Per-job amounts (setup fee, minimum charge) belong to segment 0.
- A `job_end` without a `job_start` in the events is ignored (its start is unknown); a job with no end yet is
  open and not billed, unless it has been in a gap longer than the grace at `now_ns` — then its segment is
  finished at the last reading, exactly as it will be once telemetry returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.state.events import Event

NS = 1_000_000_000
Span = tuple[int, int]
_RANK = {"state": 0, "job_end": 1, "job_start": 2}


@dataclass(frozen=True, slots=True)
class Session:
    machine: str
    job: str
    job_id: str | None
    job_start_ns: int
    segment: int
    start_ns: int
    end_ns: int
    running: tuple[Span, ...]
    material: str | None = None
    material_m: float = 0.0
    ended_by: str = "job_end"  # job_end | gap
    result: str | None = None
    energy_kwh: float = 0.0  # metered during the job (on its last session)

    @property
    def key(self) -> str:
        """Stable idempotency key: the machine, the job's start and the segment (from the source events)."""
        return f"{self.machine}/{self.job_start_ns}/{self.segment}"

    @property
    def running_ns(self) -> int:
        return sum(e - s for s, e in self.running)


@dataclass(slots=True)
class _Open:
    job: str
    job_id: str | None
    job_start_ns: int
    material: str | None
    segment: int = 0
    seg_start_ns: int = 0
    spans: list[Span] = field(default_factory=list)
    running_since: int | None = None
    gap_start: int | None = None  # the last reading before an offline state


def _canonical(events: Iterable[Event]) -> list[tuple[str, int, int, str, Event]]:
    seen: dict[tuple[str, int, str, str], Event] = {}
    for e in events:
        if e.type not in _RANK:
            continue
        data = json.dumps(e.data, sort_keys=True, ensure_ascii=False, default=str)
        seen.setdefault((e.machine, e.ts_ns, e.type, data), e)
    return sorted((m, ts, _RANK[t], d, e) for (m, ts, t, d), e in seen.items())


def _material(data: dict[str, object]) -> str | None:
    value = data.get("material")
    return str(value) if value not in (None, "") else None


def fold_sessions(events: Iterable[Event], *, grace_s: float, now_ns: int | None = None) -> tuple[
        list[Session], list[Session]]:
    """(finished sessions, sessions of jobs still open at the last event or `now_ns`), each sorted by key.

    Pure and deterministic: the same set of events gives the same sessions whatever their order or repeats."""
    grace_ns = int(grace_s * NS)
    finished: list[Session] = []
    still_open: list[Session] = []
    state: dict[str, str] = {}
    jobs: dict[str, _Open] = {}

    def emit(machine: str, job: _Open, end_ns: int, ended_by: str, *, material_m: float = 0.0,
             energy_kwh: float = 0.0, result: str | None = None) -> None:
        if job.running_since is not None:
            job.spans.append((job.running_since, max(job.running_since, end_ns)))
            job.running_since = None
        spans = tuple((s, e) for s, e in job.spans if e > s)
        if job.segment == 0 or spans or material_m > 0 or energy_kwh > 0:
            finished.append(Session(machine, job.job, job.job_id, job.job_start_ns, job.segment, job.seg_start_ns,
                                    max(job.seg_start_ns, end_ns), spans, job.material, material_m, ended_by,
                                    result, energy_kwh))
        job.spans = []

    for machine, ts, _rank, _data, e in _canonical(events):
        job = jobs.get(machine)
        if e.type == "state":
            new = str(e.data.get("to"))
            state[machine] = new
            if job is None:
                continue
            if job.gap_start is not None:
                if new == "offline":
                    continue
                gap_start, job.gap_start = job.gap_start, None
                if ts - gap_start > grace_ns:
                    emit(machine, job, gap_start, "gap")
                    job.segment += 1
                    job.seg_start_ns = ts
            if new == "offline":
                last_seen = e.data.get("last_seen_ns")
                job.gap_start = min(ts, int(last_seen)) if isinstance(last_seen, int) else ts
                if job.running_since is not None:
                    job.spans.append((job.running_since, max(job.running_since, job.gap_start)))
                    job.running_since = None
            elif new == "running":
                if job.running_since is None:
                    job.running_since = ts
            elif job.running_since is not None:
                job.spans.append((job.running_since, ts))
                job.running_since = None
        elif e.type == "job_start":
            if job is not None:
                emit(machine, job, ts, "job_end", result="superseded")
            job = _Open(str(e.data.get("job") or "job"), _str(e.data.get("job_id")), ts, _material(e.data),
                        seg_start_ns=ts)
            if state.get(machine) in (None, "running"):
                job.running_since = ts
            elif state.get(machine) == "offline":
                job.gap_start = ts
            jobs[machine] = job
        elif e.type == "job_end" and job is not None:
            if job.gap_start is not None and ts - job.gap_start > grace_ns:
                emit(machine, job, job.gap_start, "gap")
                job.segment += 1
                job.seg_start_ns = ts
            job.gap_start = None
            emit(machine, job, ts, "job_end", material_m=_num(e.data.get("material_m")),
                 energy_kwh=_num(e.data.get("energy_kwh")), result=_str(e.data.get("result")))
            del jobs[machine]
    for machine, job in sorted(jobs.items()):
        if job.gap_start is not None and now_ns is not None and now_ns - job.gap_start > grace_ns:
            emit(machine, job, job.gap_start, "gap")
            continue
        end = now_ns if now_ns is not None else job.seg_start_ns
        spans = [*job.spans] + ([(job.running_since, max(job.running_since, end))]
                                if job.running_since is not None and job.gap_start is None else [])
        still_open.append(Session(machine, job.job, job.job_id, job.job_start_ns, job.segment, job.seg_start_ns,
                                  max(job.seg_start_ns, end), tuple(s for s in spans if s[1] > s[0]),
                                  job.material, 0.0, "open"))
    finished.sort(key=lambda s: (s.machine, s.job_start_ns, s.segment))
    still_open.sort(key=lambda s: (s.machine, s.job_start_ns, s.segment))
    return finished, still_open


def _num(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0.0


def _str(value: object) -> str | None:
    return None if value in (None, "") else str(value)
