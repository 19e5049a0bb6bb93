"""InfluxQL for the Grafana Foundation SDK, which ships no InfluxDB query type: a raw-query dataquery, its builder,
an InfluxQL annotation, the datasource reference and the template variables every dashboard shares.

The JSON shapes follow Grafana's InfluxDB datasource (`InfluxQuery` in `public/app/plugins/datasource/influxdb`):
a raw target is `{"refId", "datasource", "query", "rawQuery": true, "resultFormat"}`; an InfluxQL annotation keeps
its query and column mapping in `target` with `fromAnnotations: true`.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

from gateway import schema

PLUGIN_ID = "influxdb"
DATASOURCE_VAR = "datasource"
#: The uid of the datasource `kartech dashboards push` and the provisioning file create.
DATASOURCE_UID = "kartech-influxdb"
DATASOURCE_NAME = "Kartech InfluxDB"

ResultFormat = Literal["time_series", "table", "logs"]


def ds_ref() -> model.DataSourceRef:
    """Every panel and query points at the `datasource` variable, so any InfluxQL datasource can be picked."""
    return model.DataSourceRef(type_val=PLUGIN_ID, uid="${" + DATASOURCE_VAR + "}")


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target."""

    def __init__(
        self,
        query: str = "",
        ref_id: str = "",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        datasource: model.DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format: ResultFormat = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            query=str(data.get("query", "")),
            ref_id=str(data.get("refId", "")),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            datasource=model.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )


def register_influxql_variant() -> None:
    """Let the SDK's `Dashboard.from_json` turn influxdb targets back into InfluxQLQuery (call it explicitly)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=InfluxQLQuery.from_json)
    )


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder: `InfluxQL("SELECT ...").ref_id("A").table()`; the datasource defaults to the `datasource` variable."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=_one_line(query), datasource=ds_ref())

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self


def _one_line(query: str) -> str:
    return re.sub(r"\s+", " ", query).strip()


# --- annotations -------------------------------------------------------------------------------------------


class InfluxAnnotationTarget(model.AnnotationTarget):
    """The `target` of an InfluxQL annotation: the query and which columns hold text, tags and title."""

    def __init__(self, query: str, text_column: str = "", tags_column: str = "", title_column: str = "") -> None:
        super().__init__()
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "fromAnnotations": True,
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "titleColumn": self.title_column,
            "timeEndColumn": "",
        }


class _AnnotationTargetBuilder(cogbuilder.Builder[model.AnnotationTarget]):
    def __init__(self, target: InfluxAnnotationTarget) -> None:
        self._target = target

    def build(self) -> model.AnnotationTarget:
        return self._target


def influx_annotation(
    name: str, query: str, *, color: str, text_column: str, tags_column: str = "", title_column: str = ""
) -> dash.AnnotationQuery:
    target = InfluxAnnotationTarget(_one_line(query), text_column, tags_column, title_column)
    return (
        dash.AnnotationQuery()
        .name(name)
        .datasource(ds_ref())
        .enable(True)
        .icon_color(color)
        .target(_AnnotationTargetBuilder(target))
    )


def builtin_annotation() -> dash.AnnotationQuery:
    """Grafana's own "Annotations & Alerts", which every dashboard carries."""
    target = dash.AnnotationTarget().limit(100).match_any(False).tags([]).type("dashboard")
    return (
        dash.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
        .target(target)
    )


# --- template variables ------------------------------------------------------------------------------------

#: The `kind` variable lists measurements; this Grafana (JavaScript) regex hides the ones that are not machines.
KIND_REGEX = "/^(?!(" + "|".join(schema.NOT_MACHINE_KINDS) + ")$).+$/"

MATCH_ALL = ".*"


def datasource_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable(DATASOURCE_VAR)
        .label("InfluxDB")
        .type(PLUGIN_ID)
        .current(model.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def _query_variable(name: str, label: str, query: str, *, multi: bool, all_value: str | None) -> dash.QueryVariable:
    v = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(ds_ref())
        .query(query)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    if all_value is not None:
        v = v.all_value(all_value)
    return v


def site_variable() -> dash.QueryVariable:
    return _query_variable("site", "Site", f'SHOW TAG VALUES WITH KEY = "{schema.SITE}"', multi=True,
                           all_value=MATCH_ALL)


def kind_variable() -> dash.QueryVariable:
    # No custom all value: "All" must expand to the machine kinds only, never to events, oee, ...
    return _query_variable(
        "kind", "Machine kind", f'SHOW MEASUREMENTS WHERE "{schema.SITE}" =~ /^$site$/', multi=True, all_value=None
    ).regex(KIND_REGEX)


def lab_variable() -> dash.QueryVariable:
    # ".*" also matches machines without a lab tag (InfluxQL compares a missing tag as "").
    return _query_variable(
        "lab", "Lab",
        f'SHOW TAG VALUES FROM /^$kind$/ WITH KEY = "{schema.LAB}" WHERE "{schema.SITE}" =~ /^$site$/',
        multi=True, all_value=MATCH_ALL,
    )


def machine_variable(*, multi: bool = True) -> dash.QueryVariable:
    v = _query_variable(
        "machine", "Machine",
        f'SHOW TAG VALUES FROM /^$kind$/ WITH KEY = "{schema.MACHINE}" '
        f'WHERE "{schema.SITE}" =~ /^$site$/ AND "{schema.LAB}" =~ /^$lab$/',
        multi=multi, all_value=MATCH_ALL if multi else None,
    )
    if not multi:
        v = v.current(model.VariableOption(selected=True, text="", value=""))
    return v


def timezone_variable() -> dash.ConstantVariable:
    """The site's time zone for day and month buckets (`tz()`); change the constant for another site."""
    return dash.ConstantVariable("timezone").value("Asia/Almaty")


#: WHERE clause shared by every per-machine query (`kind` is the FROM regex).
MACHINE_FILTER = (
    f'"{schema.SITE}" =~ /^$site$/ AND "{schema.LAB}" =~ /^$lab$/ AND "{schema.MACHINE}" =~ /^$machine$/'
)
KIND_FROM = "/^$kind$/"
#: Kind filter for the engine measurements, which carry the kind as a tag.
KIND_TAG_FILTER = f'"{schema.KIND}" =~ /^$kind$/'
TZ = "tz('${timezone:raw}')"
