"""Machine detail: one machine's state, signals, signal quality and jobs, with state and job annotations."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common

from dashboards import influxql as q
from dashboards import panels as p
from gateway import schema as s

UID = "kartech-machine"

ONE_MACHINE = f'"{s.MACHINE}" =~ /^$machine$/'
CURRENT_STATE = f'SELECT last("{s.STATE}") FROM {q.KIND_FROM} WHERE {ONE_MACHINE} AND $timeFilter'
STATE_TIMELINE = (
    f'SELECT last("{s.STATE}") FROM {q.KIND_FROM} WHERE {ONE_MACHINE} AND $timeFilter '
    "GROUP BY time($__interval) fill(previous)"
)
LATEST_VALUES = f"SELECT last(*) FROM {q.KIND_FROM} WHERE {ONE_MACHINE} AND $timeFilter"
SIGNALS = (
    f"SELECT mean(*) FROM {q.KIND_FROM} WHERE {ONE_MACHINE} AND $timeFilter "
    "GROUP BY time($__interval) fill(none)"
)
NOT_GOOD = (
    f"SELECT count(/{s.QUALITY_SUFFIX}$/) FROM {q.KIND_FROM} WHERE {ONE_MACHINE} AND $timeFilter "
    "GROUP BY time($__interval) fill(none)"
)
JOBS = (
    f'SELECT "{s.JOB}", "{s.RESULT}", "{s.DURATION_S}", "{s.MATERIAL_M}" FROM "{s.EVENTS}" WHERE {ONE_MACHINE} '
    f"AND \"{s.EVENT_TYPE}\" = '{s.EVENT_JOB_END}' AND $timeFilter ORDER BY time DESC LIMIT 200"
)
STATE_ANNOTATION = (
    f'SELECT "{s.TITLE}", "{s.TO_STATE}", "{s.EVENT_TYPE}" FROM "{s.EVENTS}" WHERE {ONE_MACHINE} '
    f"AND \"{s.EVENT_TYPE}\" = '{s.EVENT_STATE}' AND $timeFilter"
)
JOB_ANNOTATION = (
    f'SELECT "{s.TITLE}", "{s.EVENT_TYPE}" FROM "{s.EVENTS}" WHERE {ONE_MACHINE} '
    f"AND (\"{s.EVENT_TYPE}\" = '{s.EVENT_JOB_START}' OR \"{s.EVENT_TYPE}\" = '{s.EVENT_JOB_END}') AND $timeFilter"
)


def build() -> dash.Dashboard:
    state = (
        stat.Panel()
        .title("State")
        .description("The machine's latest state in the range.")
        .span(6).height(6)
        .with_target(q.InfluxQL(CURRENT_STATE).ref_id("A"))
        .mappings(p.value_colors(p.STATE_COLORS))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    timeline = (
        statetimeline.Panel()
        .title("State over time")
        .span(18).height(6)
        .with_target(q.InfluxQL(STATE_TIMELINE).ref_id("A").alias("$machine"))
        .mappings(p.value_colors(p.STATE_COLORS))
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
    )
    signals = (
        timeseries.Panel()
        .title("Signals")
        .description("Every numeric signal of the machine, averaged per interval; state and job annotations on top.")
        .span(24).height(11)
        .with_target(q.InfluxQL(SIGNALS).ref_id("A").alias("$col"))
        .span_nulls(True)
    )
    latest = (
        table.Panel()
        .title("Latest values")
        .description("The last value of every signal in the range (strings and booleans included).")
        .span(12).height(9)
        .with_target(q.InfluxQL(LATEST_VALUES).ref_id("A").table())
        .transformations([p.transformation("reduce", {"reducers": ["lastNotNull"], "mode": "seriesToRows"}),
                          p.organize({"Field": "signal", "Last *": "value"}, ())])
    )
    quality = (
        timeseries.Panel()
        .title("Readings that were not good")
        .description("Count of uncertain or bad readings per signal and interval (`<signal>_quality` fields).")
        .span(12).height(9)
        .with_target(q.InfluxQL(NOT_GOOD).ref_id("A").alias("$col"))
        .draw_style(common.GraphDrawStyle.BARS)
    )
    jobs = (
        table.Panel()
        .title("Jobs finished")
        .description("Jobs that ended in the range, newest first (events of type job_end).")
        .span(24).height(8)
        .with_target(q.InfluxQL(JOBS).ref_id("A").table())
        .override_by_name(s.DURATION_S, [p.prop("unit", "s"), p.prop("displayName", "duration")])
        .override_by_name(s.MATERIAL_M, [p.prop("unit", "lengthm"), p.prop("displayName", "material")])
    )
    return (
        p.skeleton(UID, "Kartech — Machine detail",
                   "One machine: state, every signal, signal quality and jobs; state changes and jobs as annotations.")
        .with_variable(q.site_variable())
        .with_variable(q.kind_variable())
        .with_variable(q.lab_variable())
        .with_variable(q.machine_variable(multi=False))
        .annotation(q.influx_annotation("State changes", STATE_ANNOTATION, color="#8ab8ff",
                                        text_column=s.TITLE, tags_column=s.EVENT_TYPE))
        .annotation(q.influx_annotation("Jobs", JOB_ANNOTATION, color="#73bf69",
                                        text_column=s.TITLE, tags_column=s.EVENT_TYPE))
        .with_panel(state)
        .with_panel(timeline)
        .with_panel(signals)
        .with_panel(latest)
        .with_panel(quality)
        .with_panel(jobs)
    )
