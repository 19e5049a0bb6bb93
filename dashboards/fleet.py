"""Fleet overview: what every machine is doing now and did over the range, active alerts, current jobs."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import piechart, stat, statetimeline, table
from grafana_foundation_sdk.models import common

from dashboards import influxql as q
from dashboards import panels as p
from gateway import schema as s

UID = "kartech-fleet"

STATE_TIMELINE = (
    f'SELECT last("{s.STATE}") FROM {q.KIND_FROM} WHERE {q.MACHINE_FILTER} AND $timeFilter '
    f'GROUP BY time($__interval), "{s.MACHINE}" fill(previous)'
)
CURRENT_STATE = (
    f'SELECT last("{s.STATE}") AS "state" FROM {q.KIND_FROM} WHERE {q.MACHINE_FILTER} AND $timeFilter '
    f'GROUP BY "{s.MACHINE}"'
)
MACHINES_REPORTING = (
    f'SELECT count("state") FROM ({CURRENT_STATE})'
)
ALERT_EVENTS = (
    f'FROM "{s.EVENTS}" WHERE {q.MACHINE_FILTER} AND {q.KIND_TAG_FILTER} AND "{s.EVENT_TYPE}" = \'{s.EVENT_ALERT}\''
)
ACTIVE_ALERTS = (
    f'SELECT "{s.SEVERITY}", "{s.ALERT_STATE}", "{s.MESSAGE}", "{s.ALERT_ID}" FROM ('
    f'SELECT last("{s.SEVERITY}") AS "{s.SEVERITY}", last("{s.ALERT_STATE}") AS "{s.ALERT_STATE}", '
    f'last("{s.MESSAGE}") AS "{s.MESSAGE}", last("{s.ALERT_ID}") AS "{s.ALERT_ID}" {ALERT_EVENTS} '
    f'AND $timeFilter GROUP BY "{s.MACHINE}", "{s.RULE}"'
    f') WHERE "{s.ALERT_STATE}" <> \'{s.ALERT_CLOSED}\' GROUP BY "{s.MACHINE}", "{s.RULE}"'
)
CURRENT_JOBS = (
    f'SELECT last("{s.STATE}") AS "state", last("{s.JOB_FILE}") AS "job", last("{s.PROGRESS_PCT}") AS "progress", '
    f'last("{s.REMAINING_S}") AS "remaining" FROM {q.KIND_FROM} WHERE {q.MACHINE_FILTER} AND $timeFilter '
    f'AND "{s.JOB_FILE}" <> \'\' GROUP BY "{s.MACHINE}"'
)


def build() -> dash.Dashboard:
    state_count = (
        piechart.Panel()
        .title("Machines per state")
        .description("Each machine's latest state in the range, counted by state.")
        .span(8).height(9)
        .with_target(q.InfluxQL(CURRENT_STATE).ref_id("A").table())
        .transformations([
            p.merge(),
            p.transformation("groupBy", {"fields": {
                "state": {"operation": "groupby", "aggregations": []},
                "machine": {"operation": "aggregate", "aggregations": ["count"]},
            }}),
        ])
        .mappings(p.value_colors(p.STATE_COLORS))
        .reduce_options(cb.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields("/.*/"))
    )
    reporting = (
        stat.Panel()
        .title("Machines reporting")
        .description("Machines that sent a state in the range.")
        .span(4).height(9)
        .with_target(q.InfluxQL(MACHINES_REPORTING).ref_id("A"))
        .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .thresholds(p.thresholds((None, "blue")))
    )
    alerts = (
        table.Panel()
        .title("Active alerts")
        .description("Alerts not closed yet, per machine and rule (latest alert event in the range).")
        .span(12).height(9)
        .with_target(q.InfluxQL(ACTIVE_ALERTS).ref_id("A").table())
        .transformations([p.merge(), p.organize({}, ("Time",))])
        .override_by_name("severity", p.colored_cells(p.SEVERITY_COLORS))
        .override_by_name("state", p.colored_cells(p.ALERT_STATE_COLORS))
    )
    timeline = (
        statetimeline.Panel()
        .title("State of every machine")
        .description("The `state` signal of each machine over the range (mapped by the gateway).")
        .span(24).height(12)
        .with_target(q.InfluxQL(STATE_TIMELINE).ref_id("A").alias("$tag_machine"))
        .mappings(p.value_colors(p.STATE_COLORS))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
    )
    jobs = (
        table.Panel()
        .title("Current jobs")
        .description("Each machine's latest job, progress and time left (machines that report a job).")
        .span(24).height(8)
        .with_target(q.InfluxQL(CURRENT_JOBS).ref_id("A").table())
        .transformations([p.merge(), p.organize({"progress": "progress %", "remaining": "time left"}, ("Time",))])
        .override_by_name("progress %", p.gauge_cells("percent"))
        .override_by_name("time left", [p.prop("unit", "s")])
        .override_by_name("state", p.colored_cells(p.STATE_COLORS))
    )
    return (
        p.skeleton(UID, "Kartech — Fleet overview",
                   "What every machine is doing now and did over the range; active alerts; current jobs.")
        .with_variable(q.site_variable())
        .with_variable(q.kind_variable())
        .with_variable(q.lab_variable())
        .with_variable(q.machine_variable())
        .with_panel(state_count)
        .with_panel(reporting)
        .with_panel(alerts)
        .with_panel(timeline)
        .with_panel(jobs)
    )

