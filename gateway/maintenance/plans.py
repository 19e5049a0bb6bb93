"""Maintenance due by real usage — pure functions.

A task is due when any of its limits is reached (running hours, cycles, material, calendar days: whichever comes
first); it is `due_soon` from `warn_at_pct` of the nearest limit. Usage is measured since the task was last done
(counters then are its baseline); before it was ever marked done, `already_used` is added (use before the gateway
started counting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.operations import MaintenancePlan, Usage
from gateway.machines import MachineMeta

NS = 1_000_000_000
DAY_NS = 86_400 * NS
METRICS = ("running_h", "cycles", "material_m", "days")


def applies(plan: MaintenancePlan, meta: MachineMeta) -> bool:
    return meta.id in plan.machines or meta.kind in plan.kinds


def measured(counters: Mapping[str, float]) -> dict[str, float]:
    """Usage counters in the units plans are written in."""
    return {"running_h": counters.get("running_s", 0.0) / 3600.0, "cycles": counters.get("cycles", 0.0),
            "material_m": counters.get("material_m", 0.0)}


@dataclass(frozen=True, slots=True)
class Baseline:
    done_ns: int
    counters: Mapping[str, float]
    initial: bool  # never marked done: `already_used` counts


def used_since(baseline: Baseline, counters: Mapping[str, float], now_ns: int,
               already: Usage | None) -> dict[str, float]:
    now, then = measured(counters), measured(baseline.counters)
    used = {k: max(0.0, now[k] - then[k]) for k in now}
    used["days"] = max(0.0, (now_ns - baseline.done_ns) / DAY_NS)
    if baseline.initial and already is not None:
        for k, v in already.items():
            used[k] += v
    return used


def evaluate(plan: MaintenancePlan, used: Mapping[str, float], warn_at_pct: float) -> dict[str, Any]:
    """Status (ok | due_soon | due), the percentage of the nearest limit, and every limit's use."""
    limits: dict[str, Any] = {}
    pct = 0.0
    for metric, limit in plan.every.items():
        p = used[metric] / limit * 100.0
        limits[metric] = {"used": round(used[metric], 3), "limit": limit, "pct": round(p, 1)}
        pct = max(pct, p)
    warn = plan.warn_at_pct if plan.warn_at_pct is not None else warn_at_pct
    status = "due" if pct >= 100.0 else "due_soon" if pct >= warn else "ok"
    return {"status": status, "pct": round(pct, 1), "warn_at_pct": warn, "limits": limits}
