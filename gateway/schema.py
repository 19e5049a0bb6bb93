"""Measurement, tag, field and state names that the InfluxDB writers and the dashboards share — one place, so a
rename breaks a test, not a panel.

Telemetry (written by `gateway.sinks.lineproto`): measurement = machine kind, tags `site`, `lab` (left out when
unset), `machine`; one field per signal, plus `<signal>_quality` when a reading is not good.

Everything else below is what the state/alert/maintenance/OEE/usage exporters and the gateway's self-metrics
writer put next to the telemetry in the same database. `dashboards/README.md` describes each measurement.
This module imports nothing of ours: the gateway, the dashboards and the tests all depend on it.
"""

from __future__ import annotations

from typing import Final

# --- tags every measurement written per machine carries ------------------------------------------------------
SITE: Final = "site"
LAB: Final = "lab"
MACHINE: Final = "machine"
KIND: Final = "kind"

# --- telemetry fields the dashboards name (signals are otherwise read generically with `*`) -----------------
STATE: Final = "state"
JOB_FILE: Final = "job_file"
PROGRESS_PCT: Final = "progress_pct"
REMAINING_S: Final = "remaining_s"
ENERGY_KWH: Final = "energy_kwh"
POWER_METER_KIND: Final = "power_meter"
QUALITY_SUFFIX: Final = "_quality"

# --- machine states: the one definition (gateway/state/model.py maps reported values onto them) ---------------
OFFLINE: Final = "offline"
IDLE: Final = "idle"
RUNNING: Final = "running"
PAUSED: Final = "paused"
ERROR: Final = "error"
MAINTENANCE_STATE: Final = "maintenance"
MACHINE_STATES: Final = (OFFLINE, IDLE, RUNNING, PAUSED, ERROR, MAINTENANCE_STATE)

# --- events (gateway/state/influx.py): tags site, lab, kind, machine, type (+ rule for alerts) ---------------
EVENTS: Final = "events"
EVENT_TYPE: Final = "type"  # tag
EVENT_STATE: Final = "state"  # fields from, to, duration_s (seconds spent in `from`), basis
EVENT_JOB_START: Final = "job_start"  # fields job, job_id
EVENT_JOB_END: Final = "job_end"  # fields job, job_id, result, duration_s, material_m, energy_kwh
EVENT_MAINTENANCE_DONE: Final = "maintenance_done"  # fields task, by, note
EVENT_ALERT: Final = "alert"  # tag rule; fields alert_id, severity, transition, state, count, message
TITLE: Final = "title"  # every event: one line for humans
FROM_STATE: Final = "from"
TO_STATE: Final = "to"
DURATION_S: Final = "duration_s"
JOB: Final = "job"
RESULT: Final = "result"
MATERIAL_M: Final = "material_m"
TASK: Final = "task"
DONE_BY: Final = "by"

# --- alerts: events of type alert, one per transition (raised, repeated, acknowledged, cleared, closed ...) --
RULE: Final = "rule"  # tag
SEVERITY: Final = "severity"  # field: info | warning | critical
ALERT_ID: Final = "alert_id"  # field (integer)
ALERT_STATE: Final = "state"  # field: one of ALERT_STATES (gateway/alerts/lifecycle.py)
ALERT_CLOSED: Final = "closed"  # the one state that is not open
ALERT_STATES: Final = ("active_unacknowledged", "acknowledged", "cleared_unacknowledged", "shelved", "suppressed",
                       ALERT_CLOSED)
TRANSITION: Final = "transition"  # field: raised | repeated | acknowledged | cleared | shelved | closed ...
ALERT_RAISED: Final = "raised"
MESSAGE: Final = "message"  # field

# --- maintenance: status per machine and task, written whenever it changes (and at least hourly) ------------
MAINTENANCE: Final = "maintenance"  # tags site, lab, machine, kind, task
USED: Final = "used"  # field: usage since the task was last done, in `unit`
LIMIT: Final = "limit"  # field: the task's interval, in `unit`
UNIT: Final = "unit"  # field (string): h | mm | cycles | kWh ...
DUE_PCT: Final = "due_pct"  # field: used / limit * 100
STATUS: Final = "status"  # field (string): ok | due_soon | due | overdue

# --- OEE (gateway/state/influx.py oee_line): one point per machine and shift, at the shift's start -----------
OEE: Final = "oee"  # tags site, lab, kind, machine, shift
SHIFT: Final = "shift"
AVAILABILITY: Final = "availability"  # fractions 0..1
PERFORMANCE: Final = "performance"
QUALITY: Final = "quality"
OEE_FIELD: Final = "oee"
PLANNED_S: Final = "planned_s"
RUNNING_S: Final = "running_s"
PARTS: Final = "parts"

# --- usage (gateway/billing/export.py usage_line): one point per usage ledger entry -------------------------
USAGE: Final = "usage"  # tags site, lab, machine, kind, month (YYYY-MM in the site's time zone), partner, project,
#                        source; the numbers carry the entry's sign (a reversal subtracts)
MONTH: Final = "month"
PARTNER: Final = "partner"  # `unattributed` until an admin assigns the usage
PROJECT: Final = "project"  # left out when the usage has no project
MATERIAL_USED: Final = "material_used"
MATERIAL_UNIT: Final = "material_unit"
USAGE_RUNNING_S: Final = "running_s"
USAGE_RESERVED_S: Final = "reserved_s"  # field: checked in, machine not running (check-in entries)
USAGE_JOBS: Final = "jobs"  # 1 for a job's first session, so sum() counts jobs

# --- the gateway's own metrics (gateway/self_metrics.py) ----------------------------------------------------
GATEWAY: Final = "kartech_gateway"  # tags site, host + the metric's labels (driver, sink, reason, status)
HOST: Final = "host"
DRIVER: Final = "driver"
SINK: Final = "sink"
REASON: Final = "reason"

#: Measurements in the telemetry database that are not machine kinds; the `kind` variable hides them.
NOT_MACHINE_KINDS: Final = (EVENTS, MAINTENANCE, OEE, USAGE, GATEWAY)
