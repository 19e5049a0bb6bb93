"""Alerts and maintenance: alert history, alerts over time, maintenance due by real usage, maintenance done."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common

from dashboards import influxql as q
from dashboards import panels as p
from dashboards.fleet import ACTIVE_ALERTS, ALERT_EVENTS
from gateway import schema as s

UID = "kartech-alerts-maintenance"

ENGINE_FILTER = f"{q.MACHINE_FILTER} AND {q.KIND_TAG_FILTER}"
ALERT_HISTORY = (
    f'SELECT "{s.TRANSITION}", "{s.ALERT_STATE}", "{s.SEVERITY}", "{s.MESSAGE}", "{s.ALERT_ID}" {ALERT_EVENTS} '
    f'AND $timeFilter GROUP BY "{s.MACHINE}", "{s.RULE}" ORDER BY time DESC LIMIT 500'
)
ALERTS_RAISED = (
    f'SELECT count("{s.ALERT_ID}") {ALERT_EVENTS} AND "{s.TRANSITION}" = \'{s.ALERT_RAISED}\' AND $timeFilter '
    f'GROUP BY time($__interval), "{s.RULE}" fill(none)'
)
MAINTENANCE_DUE = (
    f'SELECT last("{s.DUE_PCT}") AS "{s.DUE_PCT}", last("{s.USED}") AS "{s.USED}", last("{s.LIMIT}") AS "{s.LIMIT}", '
    f'last("{s.UNIT}") AS "{s.UNIT}", last("{s.STATUS}") AS "{s.STATUS}" FROM "{s.MAINTENANCE}" '
    f'WHERE {ENGINE_FILTER} AND $timeFilter GROUP BY "{s.MACHINE}", "{s.TASK}"'
)
MAINTENANCE_DUE_PCT = (
    f'SELECT last("{s.DUE_PCT}") FROM "{s.MAINTENANCE}" WHERE {ENGINE_FILTER} AND $timeFilter '
    f'GROUP BY "{s.MACHINE}", "{s.TASK}"'
)
MAINTENANCE_DONE = (
    f'SELECT "{s.TASK}", "{s.DONE_BY}", "{s.TITLE}" FROM "{s.EVENTS}" WHERE {ENGINE_FILTER} '
    f"AND \"{s.EVENT_TYPE}\" = '{s.EVENT_MAINTENANCE_DONE}' AND $timeFilter GROUP BY \"{s.MACHINE}\" "
    "ORDER BY time DESC LIMIT 200"
)


def build() -> dash.Dashboard:
    active = (
        table.Panel()
        .title("Active alerts")
        .span(12).height(8)
        .with_target(q.InfluxQL(ACTIVE_ALERTS).ref_id("A").table())
        .transformations([p.merge(), p.organize({}, ("Time",))])
        .override_by_name(s.SEVERITY, p.colored_cells(p.SEVERITY_COLORS))
        .override_by_name(s.ALERT_STATE, p.colored_cells(p.ALERT_STATE_COLORS))
    )
    fired = (
        timeseries.Panel()
        .title("Alerts raised")
        .description("Alerts raised per interval, by rule.")
        .span(12).height(8)
        .with_target(q.InfluxQL(ALERTS_RAISED).ref_id("A").alias("$tag_rule"))
        .draw_style(common.GraphDrawStyle.BARS)
        .decimals(0)
    )
    history = (
        table.Panel()
        .title("Alert history")
        .description("Every alert transition in the range (raised, acknowledged, cleared, closed ...), newest first.")
        .span(24).height(10)
        .with_target(q.InfluxQL(ALERT_HISTORY).ref_id("A").table())
        .transformations([p.merge(), p.transformation("sortBy", {"sort": [{"field": "Time", "desc": True}]})])
        .override_by_name(s.SEVERITY, p.colored_cells(p.SEVERITY_COLORS))
        .override_by_name(s.ALERT_STATE, p.colored_cells(p.ALERT_STATE_COLORS))
    )
    due_gauge = (
        bargauge.Panel()
        .title("Maintenance due (% of interval used)")
        .description("Per machine and task: usage since the task was last done, as % of its interval.")
        .span(10).height(10)
        .with_target(q.InfluxQL(MAINTENANCE_DUE_PCT)
            .ref_id("A").alias("$tag_machine · $tag_task"))
        .unit("percent")
        .min(0)
        .max(120)
        .thresholds(p.thresholds((None, "green"), (80, "yellow"), (100, "red")))
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    due_table = (
        table.Panel()
        .title("Maintenance status")
        .description("Used vs interval in the task's own unit (print hours, spindle hours, cycles, filament mm).")
        .span(14).height(10)
        .with_target(q.InfluxQL(MAINTENANCE_DUE).ref_id("A").table())
        .transformations([p.merge(), p.organize({s.DUE_PCT: "due %"}, ("Time",)),
                          p.transformation("sortBy", {"sort": [{"field": "due %", "desc": True}]})])
        .override_by_name("due %", p.gauge_cells("percent"))
        .override_by_name(s.STATUS, p.colored_cells(p.STATUS_COLORS))
    )
    done = (
        table.Panel()
        .title("Maintenance done")
        .span(24).height(8)
        .with_target(q.InfluxQL(MAINTENANCE_DONE).ref_id("A").table())
        .transformations([p.merge(), p.transformation("sortBy", {"sort": [{"field": "Time", "desc": True}]})])
    )
    return (
        p.skeleton(UID, "Kartech — Alerts and maintenance",
                   "Which alerts are active and what fired in the range; which maintenance is due by real usage.",
                   time_from="now-7d", refresh="1m")
        .with_variable(q.site_variable())
        .with_variable(q.kind_variable())
        .with_variable(q.lab_variable())
        .with_variable(q.machine_variable())
        .with_panel(active)
        .with_panel(fired)
        .with_panel(history)
        .with_panel(due_gauge)
        .with_panel(due_table)
        .with_panel(done)
    )
