"""Gateway restarts in the middle of a job, as the billing fold sees them.

When the gateway stops while a machine runs a job, the state engine forgets the job; after the restart it sees
the machine running again and announces the job anew (`job_start` with the same name and id). Billed naively,
that would end the first session when the second starts and bill the time the gateway was down as running.

So a restart is recorded as a *mark* — an `offline` state event at the last moment the stopped gateway knew about
(its last reading, or the machine's last event if later) — and, after a mark, a `job_start` that re-announces the
job that was open before it (same machine, job name and job id) continues that job instead of starting a new
one (unless the machine was seen idle or in error in between: then it is a new run). The downtime is then an
ordinary telemetry gap (sessions.py): not billed, and, when longer than the grace, the end of one session and
the start of the next segment of the same job — one job, keys unchanged.

Pure: the same events and marks give the same result in any order.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.state.events import Event

_RANK = {"state": 0, "job_end": 1, "job_start": 2}
RESTART_BASIS = "gateway restart"
_DONE = ("idle", "error")


def restart_mark(machine: str, last_ns: int) -> Event:
    """The mark of a restart: the machine offline from `last_ns`, the last moment the stopped gateway knew of."""
    return Event(last_ns, machine, "state", {"to": "offline", "last_seen_ns": last_ns, "basis": RESTART_BASIS})


def is_mark(e: Event) -> bool:
    return e.type == "state" and e.data.get("basis") == RESTART_BASIS


def continue_after_restart(events: Iterable[Event]) -> list[Event]:
    """The events with every re-announcement of a job after a restart mark left out (see the module text);
    sorted by machine, time and the engine's order at one instant (state, job end, job start)."""
    ordered = sorted(events, key=lambda e: (e.machine, e.ts_ns, _RANK.get(e.type, 3)))
    out: list[Event] = []
    open_job: dict[str, tuple[str, str | None]] = {}
    restarted: set[str] = set()
    for e in ordered:
        m = e.machine
        if is_mark(e):
            if m in open_job:
                restarted.add(m)
        elif e.type == "state" and e.data.get("to") in _DONE:
            restarted.discard(m)  # the machine stopped working: a job announced later is a new one
        elif e.type == "job_start":
            job = (str(e.data.get("job") or "job"), _str(e.data.get("job_id")))
            if m in restarted and open_job.get(m) == job:
                restarted.discard(m)
                continue
            restarted.discard(m)
            open_job[m] = job
        elif e.type == "job_end":
            open_job.pop(m, None)
            restarted.discard(m)
        out.append(e)
    return out


def _str(value: object) -> str | None:
    return None if value in (None, "") else str(value)
