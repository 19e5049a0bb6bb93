"""Utilisation and OEE per machine, day and shift.

Utilisation comes from state events (seconds spent running); OEE from the engine's per-shift points
(gateway/oee.py): availability over a range is summed running / planned time, so longer shifts weigh more;
performance, quality and OEE are the mean of the shifts' values.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, bargauge, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common

from dashboards import influxql as q
from dashboards import panels as p
from gateway import schema as s

UID = "kartech-oee"

ENGINE_FILTER = f"{q.MACHINE_FILTER} AND {q.KIND_TAG_FILTER}"
RUNNING_EVENTS = (
    f"FROM \"{s.EVENTS}\" WHERE {ENGINE_FILTER} AND \"{s.EVENT_TYPE}\" = '{s.EVENT_STATE}' "
    f"AND \"{s.FROM_STATE}\" = '{s.RUNNING}' AND $timeFilter"
)
UTILISATION_PER_DAY = (
    f'SELECT sum("{s.DURATION_S}") / 864 {RUNNING_EVENTS} GROUP BY time(1d), "{s.MACHINE}" fill(0) {q.TZ}'
)
RUNNING_HOURS = f'SELECT sum("{s.DURATION_S}") / 3600 {RUNNING_EVENTS} GROUP BY "{s.MACHINE}"'


def time_in_state(state: str) -> str:
    """Hours spent in one state: `from` is a field of the state events, which InfluxQL cannot group by, so the
    panel runs one of these per state and merges them on the machine."""
    return (f'SELECT sum("{s.DURATION_S}") / 3600 AS "{state}" FROM "{s.EVENTS}" WHERE {ENGINE_FILTER} '
            f"AND \"{s.EVENT_TYPE}\" = '{s.EVENT_STATE}' AND \"{s.FROM_STATE}\" = '{state}' AND $timeFilter "
            f'GROUP BY "{s.MACHINE}"')


_OEE_COLUMNS = (
    f'sum("{s.RUNNING_S}") / sum("{s.PLANNED_S}") * 100 AS "{s.AVAILABILITY}", '
    f'mean("{s.PERFORMANCE}") * 100 AS "{s.PERFORMANCE}", mean("{s.QUALITY}") * 100 AS "{s.QUALITY}", '
    f'mean("{s.OEE_FIELD}") * 100 AS "{s.OEE_FIELD}", sum("{s.PARTS}") AS "{s.PARTS}"'
)
OEE_PER_MACHINE = (
    f'SELECT {_OEE_COLUMNS} FROM "{s.OEE}" WHERE {ENGINE_FILTER} AND $timeFilter GROUP BY "{s.MACHINE}"'
)
OEE_PER_SHIFT = (
    f'SELECT {_OEE_COLUMNS} FROM "{s.OEE}" WHERE {ENGINE_FILTER} AND $timeFilter GROUP BY "{s.MACHINE}", "{s.SHIFT}"'
)
OEE_PER_DAY = (
    f'SELECT mean("{s.OEE_FIELD}") * 100 FROM "{s.OEE}" WHERE {ENGINE_FILTER} AND $timeFilter '
    f'GROUP BY time(1d), "{s.MACHINE}" fill(none) {q.TZ}'
)

def build() -> dash.Dashboard:
    oee_machine = (
        table.Panel()
        .title("OEE per machine")
        .description("Availability x performance x quality over the range, from the engine's per-shift results.")
        .span(12).height(9)
        .with_target(q.InfluxQL(OEE_PER_MACHINE).ref_id("A").table())
        .transformations([p.merge(), p.organize({}, ("Time",))])
        .unit("percent").decimals(1)
        .override_by_name(s.OEE_FIELD, p.gauge_cells("percent"))
        .override_by_name(s.PARTS, [p.prop("unit", "short"), p.prop("decimals", 0)])
    )
    running = (
        bargauge.Panel()
        .title("Running hours")
        .description("Hours each machine spent running in the range (from state events).")
        .span(12).height(9)
        .with_target(q.InfluxQL(RUNNING_HOURS).ref_id("A").alias("$tag_machine"))
        .unit("h").decimals(1)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    utilisation = (
        barchart.Panel()
        .title("Utilisation per day")
        .description("Share of each day (site time zone) the machine was running.")
        .span(24).height(9)
        .with_target(q.InfluxQL(UTILISATION_PER_DAY).ref_id("A").alias("$tag_machine"))
        .unit("percent").min(0).max(100)
        .x_tick_label_rotation(-45)
    )
    per_shift = (
        table.Panel()
        .title("OEE per machine and shift")
        .span(12).height(10)
        .with_target(q.InfluxQL(OEE_PER_SHIFT).ref_id("A").table())
        .transformations([p.merge(), p.organize({}, ("Time",))])
        .unit("percent").decimals(1)
        .override_by_name(s.OEE_FIELD, p.gauge_cells("percent"))
        .override_by_name(s.PARTS, [p.prop("unit", "short"), p.prop("decimals", 0)])
    )
    per_day = (
        timeseries.Panel()
        .title("OEE per day")
        .span(12).height(10)
        .with_target(q.InfluxQL(OEE_PER_DAY).ref_id("A").alias("$tag_machine"))
        .unit("percent").min(0).max(100)
        .draw_style(common.GraphDrawStyle.BARS)
    )
    in_state = (
        table.Panel()
        .title("Hours per state")
        .description("Time each machine spent in each state over the range.")
        .span(24).height(9)
        .targets([q.InfluxQL(time_in_state(state)).ref_id(state).table() for state in s.MACHINE_STATES])
        .transformations([p.merge(), p.organize({}, ("Time",))])
        .unit("h").decimals(1)
    )
    return (
        p.skeleton(UID, "Kartech — Utilisation and OEE",
                   "How much each machine runs, per day and shift, and its OEE (availability, performance, quality).",
                   time_from="now-7d", refresh="5m")
        .with_variable(q.site_variable())
        .with_variable(q.kind_variable())
        .with_variable(q.lab_variable())
        .with_variable(q.machine_variable())
        .with_variable(q.timezone_variable())
        .with_panel(oee_machine)
        .with_panel(running)
        .with_panel(utilisation)
        .with_panel(per_shift)
        .with_panel(per_day)
        .with_panel(in_state)
    )
