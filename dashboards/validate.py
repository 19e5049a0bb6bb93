"""Checks a dashboard JSON the way a Grafana import would trip over it; returns problems as text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dashboards import influxql

#: Grafana 10.0 wrote schemaVersion 38; anything older would be migrated on load.
MIN_SCHEMA_VERSION = 38
PANEL_TYPES = frozenset({"timeseries", "table", "stat", "state-timeline", "piechart", "barchart", "bargauge", "row"})
#: Names Grafana or the InfluxDB datasource fill in themselves.
BUILTIN_NAMES = frozenset({"timeFilter", "__interval", "__interval_ms", "interval", "col", "__all", "m", "measurement"})
_REF = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")

JSON = dict[str, Any]


def panels(dashboard: JSON) -> Iterator[JSON]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: JSON) -> Iterator[tuple[str, JSON]]:
    """(where, target) for every panel target and InfluxQL annotation."""
    for panel in panels(dashboard):
        for t in panel.get("targets", []):
            yield f"panel {panel.get('id')} {panel.get('title')!r} target {t.get('refId')}", t
    for a in dashboard.get("annotations", {}).get("list", []):
        if not a.get("builtIn"):
            yield f"annotation {a.get('name')!r}", a["target"]


def query_variables(dashboard: JSON) -> Iterator[JSON]:
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            yield v


def _datasource_ok(ref: Any, variables: dict[str, JSON], *, builtin_ok: bool = False) -> str | None:
    if not isinstance(ref, dict):
        return f"datasource {ref!r} is not a {{type, uid}} reference"
    uid, kind = ref.get("uid"), ref.get("type")
    if builtin_ok and kind == "grafana" and uid == "-- Grafana --":
        return None
    if kind != influxql.PLUGIN_ID:
        return f"datasource type {kind!r} is not {influxql.PLUGIN_ID!r}"
    if uid == influxql.DATASOURCE_UID:
        return None
    m = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", str(uid))
    if m is None:
        return f"datasource uid {uid!r} is neither {influxql.DATASOURCE_UID!r} nor a datasource variable"
    var = variables.get(m.group(1) or m.group(2))
    if var is None or var.get("type") != "datasource" or var.get("query") != influxql.PLUGIN_ID:
        return f"datasource uid {uid!r} names no influxdb datasource variable"
    return None


def _overlaps(a: JSON, b: JSON) -> bool:
    ax, ay, aw, ah = (int(a[k]) for k in ("x", "y", "w", "h"))
    bx, by, bw, bh = (int(b[k]) for k in ("x", "y", "w", "h"))
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def problems(dashboard: JSON) -> list[str]:
    out: list[str] = []
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < MIN_SCHEMA_VERSION:
        out.append(f"schemaVersion {dashboard.get('schemaVersion')!r} is missing or older than {MIN_SCHEMA_VERSION}")
    for key in ("uid", "title"):
        if not dashboard.get(key):
            out.append(f"{key} is missing")
    if len(str(dashboard.get("uid", ""))) > 40:
        out.append("uid is longer than Grafana's 40 characters")
    variables: dict[str, JSON] = {}
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("name") in variables:
            out.append(f"variable {v.get('name')!r} is defined twice")
        variables[v["name"]] = v
    for v in query_variables(dashboard):
        if (why := _datasource_ok(v.get("datasource"), variables)) is not None:
            out.append(f"variable {v['name']!r}: {why}")
    ids: set[int] = set()
    boxes: list[tuple[str, JSON]] = []
    for panel in panels(dashboard):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        pid = panel.get("id")
        if not isinstance(pid, int) or pid <= 0 or pid in ids:
            out.append(f"{where}: id must be a unique positive integer")
        else:
            ids.add(pid)
        if panel.get("type") not in PANEL_TYPES:
            out.append(f"{where}: unknown panel type {panel.get('type')!r}")
        g = panel.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
            out.append(f"{where}: gridPos {g!r} is incomplete")
            continue
        if g["w"] <= 0 or g["h"] <= 0 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
            out.append(f"{where}: gridPos {g!r} is outside the 24-column grid")
        for other_where, other in boxes:
            if _overlaps(g, other):
                out.append(f"{where} overlaps {other_where}")
        boxes.append((where, g))
        if panel.get("type") != "row":
            if (why := _datasource_ok(panel.get("datasource"), variables)) is not None:
                out.append(f"{where}: {why}")
            refs = [t.get("refId") for t in panel.get("targets", [])]
            if not refs or len(set(refs)) != len(refs) or not all(refs):
                out.append(f"{where}: targets need distinct, non-empty refIds (has {refs})")
    for a in dashboard.get("annotations", {}).get("list", []):
        if (why := _datasource_ok(a.get("datasource"), variables, builtin_ok=bool(a.get("builtIn")))) is not None:
            out.append(f"annotation {a.get('name')!r}: {why}")
    texts = [*targets(dashboard)] + [(f"variable {v['name']!r}", v) for v in query_variables(dashboard)]
    for where, t in texts:
        query = t.get("query")
        if not isinstance(query, str) or not query.strip():
            out.append(f"{where}: empty query")
            continue
        if "refId" in t and t.get("rawQuery") is not True:
            out.append(f"{where}: not a raw InfluxQL query")
        if "datasource" in t and (why := _datasource_ok(t["datasource"], variables)) is not None:
            out.append(f"{where}: {why}")
        for m in _REF.finditer(query):
            name = m.group(1) or m.group(2) or m.group(3)
            if name not in variables and name not in BUILTIN_NAMES and not name.startswith("tag_"):
                out.append(f"{where}: ${name} is not a variable of this dashboard")
    return out
