"""Usage: running hours and material per machine and month from the `usage` points the gateway writes per finished
job, running hours per day, and energy per day from the power meters.

Per-partner usage and energy per job are not shown: the gateway's `usage_line` writes neither a `partner` tag nor
an `energy_kwh` field (usage is not yet attributed to partners, energy not metered per job)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common

from dashboards import influxql as q
from dashboards import panels as p
from gateway import schema as s

UID = "kartech-usage"

ENGINE_FILTER = f"{q.MACHINE_FILTER} AND {q.KIND_TAG_FILTER}"
_TOTALS = (
    f'sum("{s.USAGE_RUNNING_S}") / 3600 AS "running_h", sum("{s.MATERIAL_USED}") AS "material", '
    f'last("{s.MATERIAL_UNIT}") AS "material_unit", sum("{s.USAGE_JOBS}") AS "jobs"'
)
PER_MACHINE_MONTH = (
    f'SELECT {_TOTALS} FROM "{s.USAGE}" WHERE {ENGINE_FILTER} AND $timeFilter GROUP BY "{s.MONTH}", "{s.MACHINE}"'
)
PER_PARTNER_MONTH = (
    f'SELECT {_TOTALS} FROM "{s.USAGE}" WHERE {ENGINE_FILTER} AND $timeFilter '
    f'GROUP BY "{s.MONTH}", "{s.PARTNER}", "{s.PROJECT}"'
)
RUNNING_EVENTS = (
    f"FROM \"{s.EVENTS}\" WHERE {ENGINE_FILTER} AND \"{s.EVENT_TYPE}\" = '{s.EVENT_STATE}' "
    f"AND \"{s.FROM_STATE}\" = '{s.RUNNING}' AND $timeFilter"
)
RUNNING_PER_DAY = (
    f'SELECT sum("{s.DURATION_S}") / 3600 {RUNNING_EVENTS} GROUP BY time(1d), "{s.MACHINE}" fill(0) {q.TZ}'
)
JOBS_IN_RANGE = (
    f'SELECT count("{s.JOB}") AS "jobs", sum("{s.DURATION_S}") / 3600 AS "job_hours", '
    f'sum("{s.MATERIAL_M}") AS "material_m" FROM "{s.EVENTS}" WHERE {ENGINE_FILTER} '
    f"AND \"{s.EVENT_TYPE}\" = '{s.EVENT_JOB_END}' AND $timeFilter GROUP BY \"{s.MACHINE}\""
)
ENERGY_PER_DAY = (
    f'SELECT spread("{s.ENERGY_KWH}") FROM "{s.POWER_METER_KIND}" WHERE {q.MACHINE_FILTER} AND $timeFilter '
    f'GROUP BY time(1d), "{s.MACHINE}" fill(none) {q.TZ}'
)


def build() -> dash.Dashboard:
    per_machine = (
        table.Panel()
        .title("Per machine and month")
        .description("Running hours, material and jobs per calendar month (site time zone) from the usage "
                     "ledger's `usage` points.")
        .span(24).height(10)
        .with_target(q.InfluxQL(PER_MACHINE_MONTH).ref_id("A").table())
        .transformations([p.merge(), p.organize({"running_h": "running hours"}, ("Time",)),
                          p.transformation("sortBy", {"sort": [{"field": s.MONTH, "desc": True}]})])
        .override_by_name("running hours", [p.prop("unit", "h"), p.prop("decimals", 2)])
    )
    per_partner = (
        table.Panel()
        .title("Per partner, project and month")
        .description("Running hours, material and jobs billed to each partner and project per calendar month (site "
                     "time zone), from the usage ledger; `unattributed` is usage no attribution rule matched and no "
                     "admin has assigned yet. Statements: GET /api/v1/billing/statements/{partner}/{YYYY-MM}.")
        .span(24).height(9)
        .with_target(q.InfluxQL(PER_PARTNER_MONTH).ref_id("A").table())
        .transformations([p.merge(), p.organize({"running_h": "running hours"}, ("Time",)),
                          p.transformation("sortBy", {"sort": [{"field": s.MONTH, "desc": True}]})])
        .override_by_name("running hours", [p.prop("unit", "h"), p.prop("decimals", 2)])
    )
    jobs = (
        table.Panel()
        .title("Jobs and material in the range")
        .description("Finished jobs, their hours and material (metres of filament, wire ...) per machine, from job "
                     "events; pick a month in the time picker for a monthly view.")
        .span(24).height(8)
        .with_target(q.InfluxQL(JOBS_IN_RANGE).ref_id("A").table())
        .transformations([p.merge(), p.organize({"job_hours": "job hours", "material_m": "material"}, ("Time",))])
        .override_by_name("job hours", [p.prop("unit", "h"), p.prop("decimals", 2)])
        .override_by_name("material", [p.prop("unit", "lengthm"), p.prop("decimals", 2)])
    )
    running = (
        barchart.Panel()
        .title("Running hours per day")
        .description("Hours each machine spent running per day (site time zone), from state events.")
        .span(12).height(9)
        .with_target(q.InfluxQL(RUNNING_PER_DAY).ref_id("A").alias("$tag_machine"))
        .unit("h")
        .stacking(common.StackingMode.NORMAL)
        .x_tick_label_rotation(-45)
    )
    energy = (
        timeseries.Panel()
        .title("Energy per day (power meters)")
        .description("Growth of each power meter's energy counter per day.")
        .span(12).height(9)
        .with_target(q.InfluxQL(ENERGY_PER_DAY).ref_id("A").alias("$tag_machine"))
        .unit("kwatth")
        .draw_style(common.GraphDrawStyle.BARS)
    )
    return (
        p.skeleton(UID, "Kartech — Usage",
                   "Running hours and material per partner, project, machine and month; energy per day from the "
                   "power meters.",
                   time_from="now-90d", refresh="1h")
        .with_variable(q.site_variable())
        .with_variable(q.kind_variable())
        .with_variable(q.lab_variable())
        .with_variable(q.machine_variable())
        .with_variable(q.timezone_variable())
        .with_panel(per_partner)
        .with_panel(jobs)
        .with_panel(per_machine)
        .with_panel(running)
        .with_panel(energy)
    )
