"""Small helpers every dashboard uses: a dashboard skeleton, state colours, thresholds, table transformations."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from dashboards import influxql
from gateway import schema

FOLDER_UID = "kartech"
FOLDER_TITLE = "Kartech Gateway"
TAGS = ["kartech", "generated"]

STATE_COLORS = {
    schema.RUNNING: "green",
    schema.IDLE: "blue",
    schema.PAUSED: "yellow",
    schema.ERROR: "red",
    schema.MAINTENANCE_STATE: "purple",
    schema.OFFLINE: "#8e8e8e",
}
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
ALERT_STATE_COLORS = {"firing": "red", "acknowledged": "orange", "shelved": "#8e8e8e", "resolved": "green"}
STATUS_COLORS = {"ok": "green", "due_soon": "yellow", "due": "orange", "overdue": "red"}


def skeleton(
    uid: str, title: str, description: str, *, time_from: str = "now-6h", refresh: str = "30s"
) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .refresh(refresh)
        .annotation(influxql.builtin_annotation())
        .with_variable(influxql.datasource_variable())
    )


def value_colors(colors: dict[str, str]) -> list[model.ValueMapping]:
    options = {value: model.ValueMappingResult(color=color, index=i) for i, (value, color) in enumerate(colors.items())}
    return [model.ValueMap(options=options)]


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=v, color=c) for v, c in steps]
    )


def transformation(id_val: str, options: dict[str, object]) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=id_val, options=options)


def organize(rename: dict[str, str], exclude: tuple[str, ...] = ()) -> model.DataTransformerConfig:
    """Rename columns and hide helper ones (InfluxQL tables always carry `Time`)."""
    return transformation(
        "organize", {"renameByName": rename, "excludeByName": dict.fromkeys(exclude, True), "indexByName": {}}
    )


def merge() -> model.DataTransformerConfig:
    """One table out of the series a GROUP BY returns."""
    return transformation("merge", {})


def prop(prop_id: str, value: object) -> model.DynamicConfigValue:
    """One field-override property."""
    return model.DynamicConfigValue(id_val=prop_id, value=value)


def colored_cells(colors: dict[str, str]) -> list[model.DynamicConfigValue]:
    """Table cells of a text column coloured by value."""
    return [prop("mappings", value_colors(colors)), prop("custom.cellOptions", {"type": "color-text"})]


def gauge_cells(unit: str) -> list[model.DynamicConfigValue]:
    return [prop("unit", unit), prop("custom.cellOptions", {"type": "gauge", "mode": "basic"})]
