"""Gateway health from the gateway's own metrics (measurement `kartech_gateway`, see gateway/self_metrics.py).

Counters are cumulative since the gateway started; panels show rates (`non_negative_derivative`, which also
survives a restart's reset) or increases per interval (`non_negative_difference`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards import influxql as q
from dashboards import panels as p
from gateway import schema as s

UID = "kartech-gateway-health"

WHERE = f'FROM "{s.GATEWAY}" WHERE "{s.SITE}" =~ /^$site$/ AND "{s.HOST}" =~ /^$host$/ AND $timeFilter'
BUCKETS = "GROUP BY time($__interval)"


def rate(field: str, *tags: str) -> str:
    by = "".join(f', "{t}"' for t in (s.HOST, *tags))
    return f'SELECT non_negative_derivative(last("{field}"), 1s) {WHERE} {BUCKETS}{by} fill(none)'


def increase(field: str, *tags: str) -> str:
    by = "".join(f', "{t}"' for t in (s.HOST, *tags))
    return f'SELECT non_negative_difference(last("{field}")) {WHERE} {BUCKETS}{by} fill(none)'


def gauge(field: str, *tags: str) -> str:
    by = "".join(f', "{t}"' for t in (s.HOST, *tags))
    return f'SELECT max("{field}") {WHERE} {BUCKETS}{by} fill(none)'


READINGS_IN = rate("readings_received_total", s.DRIVER)
READINGS_WRITTEN = rate("readings_written_total", s.SINK)
SINK_QUEUE = gauge("sink_queue_readings", s.SINK)
INGEST_QUEUE = gauge("ingest_queue_readings")
BAD_INPUT = increase("bad_input_total", s.DRIVER, s.REASON)
COMMITTED = rate("readings_committed_total", s.DRIVER)
DEAD_LETTERED = increase("readings_dead_lettered_total", s.SINK)
DROPPED = increase("readings_dropped_total", s.SINK)
OUTBOX_BYTES = gauge("outbox_bytes")
OLDEST_QUEUED = gauge("sink_oldest_queued_seconds", s.SINK)
OUTBOX_ERRORS = increase("outbox_errors_total")
OUTBOX_FULL = increase("outbox_full_total")
WRITE_ERRORS = increase("sink_write_errors_total", s.SINK)
CONNECTED = f'SELECT last("driver_connected") {WHERE} {BUCKETS}, "{s.HOST}", "{s.DRIVER}" fill(previous)'
RECONNECTS = increase("driver_reconnects_total", s.DRIVER)
WRITE_TIME = (
    f'SELECT non_negative_derivative(last("sink_write_seconds_sum"), 1s) / '
    f'non_negative_derivative(last("sink_write_seconds_count"), 1s) * 1000 {WHERE} {BUCKETS}, "{s.HOST}", '
    f'"{s.SINK}" fill(none)'
)
LAST_SEEN = f'SELECT last("readings_received_total") {WHERE} GROUP BY "{s.HOST}"'
HOST_VARIABLE = f'SHOW TAG VALUES FROM "{s.GATEWAY}" WITH KEY = "{s.HOST}" WHERE "{s.SITE}" =~ /^$site$/'
SITE_VARIABLE = f'SHOW TAG VALUES FROM "{s.GATEWAY}" WITH KEY = "{s.SITE}"'


def _ts(title: str, description: str, unit: str, *targets: q.InfluxQL, span: int = 12) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).span(span).height(8).unit(unit)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def build() -> dash.Dashboard:
    gateways = (
        stat.Panel()
        .title("Gateways reporting")
        .description("Readings received since start, per gateway host (its latest self-metrics point).")
        .span(6).height(8)
        .with_target(q.InfluxQL(LAST_SEEN).ref_id("A").alias("$tag_host"))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    connected = (
        statetimeline.Panel()
        .title("Driver connected")
        .span(18).height(8)
        .with_target(q.InfluxQL(CONNECTED).ref_id("A").alias("$tag_host $tag_driver"))
        .mappings([model.ValueMap(options={
            "1": model.ValueMappingResult(text="connected", color="green", index=0),
            "0": model.ValueMappingResult(text="disconnected", color="red", index=1),
        })])
        .show_value(common.VisibilityMode.NEVER)
    )
    return (
        p.skeleton(UID, "Kartech — Gateway health",
                   "Is every gateway keeping up: readings in and written, queue depth, drops, errors, reconnects.",
                   time_from="now-3h", refresh="30s")
        .with_variable(dash.QueryVariable("site").label("Site").datasource(q.ds_ref()).query(SITE_VARIABLE)
                       .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).multi(True).include_all(True)
                       .all_value(q.MATCH_ALL)
                       .current(model.VariableOption(selected=True, text="All", value="$__all")))
        .with_variable(dash.QueryVariable("host").label("Gateway").datasource(q.ds_ref()).query(HOST_VARIABLE)
                       .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).multi(True).include_all(True)
                       .all_value(q.MATCH_ALL)
                       .current(model.VariableOption(selected=True, text="All", value="$__all")))
        .with_panel(gateways)
        .with_panel(connected)
        .with_panel(_ts("Readings in", "Readings per second received from each driver, and committed to the "
                        "durable outbox.", "reqps",
                        q.InfluxQL(READINGS_IN).ref_id("A").alias("$tag_host $tag_driver"),
                        q.InfluxQL(COMMITTED).ref_id("B").alias("$tag_host committed $tag_driver")))
        .with_panel(_ts("Readings written", "Readings per second confirmed written by each sink.", "reqps",
                        q.InfluxQL(READINGS_WRITTEN).ref_id("A").alias("$tag_host $tag_sink")))
        .with_panel(_ts("Queue depth", "Readings waiting for each sink and between drivers and sinks.", "short",
                        q.InfluxQL(SINK_QUEUE).ref_id("A").alias("$tag_host $tag_sink"),
                        q.InfluxQL(INGEST_QUEUE).ref_id("B").alias("$tag_host ingest")))
        .with_panel(_ts("Outbox", "Bytes queued in the durable outbox on disk.", "bytes",
                        q.InfluxQL(OUTBOX_BYTES).ref_id("A").alias("$tag_host outbox")))
        .with_panel(_ts("Oldest unconfirmed reading", "Age of the oldest reading each sink has not confirmed "
                        "(how far behind it is).", "s",
                        q.InfluxQL(OLDEST_QUEUED).ref_id("A").alias("$tag_host $tag_sink")))
        .with_panel(_ts("Drops", "Per interval: messages skipped as bad input (by driver and reason), readings a sink "
                        "refused as malformed (dead letters) and readings dropped by the drop_oldest policy.", "short",
                        q.InfluxQL(BAD_INPUT).ref_id("A").alias("$tag_host $tag_driver $tag_reason"),
                        q.InfluxQL(DEAD_LETTERED).ref_id("B").alias("$tag_host dead letters $tag_sink"),
                        q.InfluxQL(DROPPED).ref_id("C").alias("$tag_host dropped $tag_sink")))
        .with_panel(_ts("Errors and reconnects", "Per interval: failed (retried) sink writes, failed outbox "
                        "commits, times the outbox was full, driver reconnects.", "short",
                        q.InfluxQL(WRITE_ERRORS).ref_id("A").alias("$tag_host write errors $tag_sink"),
                        q.InfluxQL(OUTBOX_ERRORS).ref_id("B").alias("$tag_host outbox errors"),
                        q.InfluxQL(OUTBOX_FULL).ref_id("C").alias("$tag_host outbox full"),
                        q.InfluxQL(RECONNECTS).ref_id("D").alias("$tag_host reconnects $tag_driver")))
        .with_panel(_ts("Write time", "Average time per sink write request.", "ms",
                        q.InfluxQL(WRITE_TIME).ref_id("A").alias("$tag_host $tag_sink")))
    )
