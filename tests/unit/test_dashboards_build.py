"""Dashboards build, validate as Grafana dashboard JSON, match the committed files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import build, influxql
from dashboards.influxql import InfluxQLQuery, register_influxql_variant
from dashboards.validate import MIN_SCHEMA_VERSION, panels, problems, targets
from gateway import schema
from gateway.cli import main

DASHBOARDS = build.all_dashboards()


@pytest.mark.parametrize("uid", list(build.DASHBOARDS))
def test_dashboard_is_valid_grafana_json(uid: str) -> None:
    d = DASHBOARDS[uid]
    assert problems(d) == []
    assert d["uid"] == uid
    assert d["schemaVersion"] >= MIN_SCHEMA_VERSION
    assert [p["id"] for p in panels(d)] == list(range(1, len(list(panels(d))) + 1))
    names = [v["name"] for v in d["templating"]["list"]]
    assert names[0] == "datasource"
    assert "site" in names
    assert all(t["datasource"] == {"type": "influxdb", "uid": "${datasource}"} for _, t in targets(d) if "refId" in t
               and t["refId"] != "Anno")


def test_titles_and_uids_are_unique() -> None:
    assert len({d["title"] for d in DASHBOARDS.values()}) == len(DASHBOARDS) == 6


def test_variables_for_site_lab_and_kind_everywhere_but_gateway_health() -> None:
    for uid, d in DASHBOARDS.items():
        names = {v["name"] for v in d["templating"]["list"]}
        want = {"site", "host"} if uid == "kartech-gateway-health" else {"site", "lab", "kind", "machine"}
        assert want <= names, uid


def test_machine_detail_has_state_and_job_annotations() -> None:
    annotations = DASHBOARDS["kartech-machine"]["annotations"]["list"]
    influx = [a for a in annotations if not a["builtIn"]]
    assert [a["name"] for a in influx] == ["State changes", "Jobs"]
    for a in influx:
        assert a["target"]["fromAnnotations"] is True
        assert "$timeFilter" in a["target"]["query"]
        assert a["target"]["textColumn"] == schema.TITLE


def mutated(uid: str) -> dict[str, Any]:
    return copy.deepcopy(DASHBOARDS[uid])


def test_validator_catches_what_grafana_would_trip_over() -> None:
    d = mutated("kartech-fleet")
    d["panels"][1]["gridPos"] = dict(d["panels"][0]["gridPos"])
    assert any("overlaps" in p for p in problems(d))
    d = mutated("kartech-fleet")
    d["panels"][2]["id"] = d["panels"][0]["id"]
    assert any("unique positive integer" in p for p in problems(d))
    d = mutated("kartech-fleet")
    d["panels"][0]["datasource"] = {"type": "influxdb", "uid": "${nosuch}"}
    assert any("names no influxdb datasource variable" in p for p in problems(d))
    d = mutated("kartech-fleet")
    d["panels"][0]["targets"][0]["query"] += " AND $nosuch"
    assert any("$nosuch is not a variable" in p for p in problems(d))
    d = mutated("kartech-fleet")
    d["schemaVersion"] = 30
    assert any("schemaVersion" in p for p in problems(d))
    d = mutated("kartech-fleet")
    d["panels"][0]["gridPos"]["x"] = 20
    assert any("outside the 24-column grid" in p for p in problems(d))


def test_generated_files_are_up_to_date() -> None:
    assert build.stale() == [], "run `kartech dashboards build` and commit dashboards/generated"


def test_stale_files_are_detected(tmp_path: Path) -> None:
    build.write(tmp_path)
    assert build.stale(tmp_path) == []
    (tmp_path / "dashboards" / "kartech-oee.json").write_text("{}")
    (tmp_path / "dashboards" / "old.json").write_text("{}")
    assert build.stale(tmp_path) == ["dashboards/kartech-oee.json", "dashboards/old.json (no builder makes it)"]


def test_cli_build_writes_json_and_provisioning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(build.DASHBOARDS) + 2
    fleet = json.loads((tmp_path / "dashboards" / "kartech-fleet.json").read_text())
    assert fleet == DASHBOARDS["kartech-fleet"]
    ds = yaml.safe_load((tmp_path / build.DATASOURCE_FILE).read_text())["datasources"][0]
    assert (ds["uid"], ds["type"], ds["jsonData"]["version"]) == (influxql.DATASOURCE_UID, "influxdb", "InfluxQL")
    assert ds["url"] == "$KARTECH_INFLUX_URL"
    assert ds["secureJsonData"]["password"] == "$KARTECH_INFLUX_PASSWORD"
    assert ds["jsonData"]["dbName"] == "$KARTECH_INFLUX_DATABASE"
    assert ds["user"] == "$KARTECH_INFLUX_USER"
    provider = yaml.safe_load((tmp_path / build.PROVIDER_FILE).read_text())["providers"][0]
    assert provider["options"]["path"] == build.GRAFANA_DASHBOARD_PATH
    assert provider["folderUid"] == "kartech"


def test_influxql_targets_round_trip_through_the_sdk() -> None:
    register_influxql_variant()
    d = Dashboard.from_json(DASHBOARDS["kartech-oee"])
    target = d.panels[0].targets[0]  # type: ignore[index, union-attr]
    assert isinstance(target, InfluxQLQuery)
    assert target.result_format == "table"
    assert target.query.startswith("SELECT sum(")
