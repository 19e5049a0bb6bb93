"""`kartech dashboards push` against a local HTTP server that answers like Grafana's HTTP API for the calls used."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards import build, influxql
from dashboards.panels import FOLDER_TITLE, FOLDER_UID
from dashboards.push import PushError, push
from gateway.cli import main

pytestmark = pytest.mark.integration

TOKEN = "glsa_test_token"
ENV = {
    "GRAFANA_TOKEN": TOKEN,
    "KARTECH_INFLUX_URL": "http://influxdb:8086",
    "KARTECH_INFLUX_DATABASE": "kartech",
    "KARTECH_INFLUX_USER": "grafana",
    "KARTECH_INFLUX_PASSWORD": "s3cret",
}


@dataclass
class FakeGrafana:
    """State and request log of the fake; `requests` holds (method, path, body)."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    next_id: int = 1

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    def handle(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        self.auth.append(auth)
        if auth != f"Bearer {TOKEN}":
            return 401, {"message": "Unauthorized"}
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "folders"]:
            return self._folders(method, parts[2:], body)
        if parts[:2] == ["api", "datasources"]:
            return self._datasources(method, parts[2:], body)
        if parts[:2] == ["api", "dashboards"]:
            return self._dashboards(method, parts[2:], body)
        return 404, {"message": "Not found"}

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _folders(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and len(rest) == 1:
            f = self.folders.get(rest[0])
            return (200, f) if f else (404, {"message": "folder not found", "status": "not-found"})
        if method == "POST" and not rest:
            if body["uid"] in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = {"id": self._id(), "uid": body["uid"], "title": body["title"], "version": 1}
            return 200, self.folders[body["uid"]]
        if method == "PUT" and len(rest) == 1 and rest[0] in self.folders:
            f = self.folders[rest[0]]
            f.update(title=body["title"], version=f["version"] + 1)
            return 200, f
        return 404, {"message": "Not found"}

    def _datasources(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and rest[:1] == ["uid"]:
            ds = self.datasources.get(rest[1])
            if ds is None:
                return 404, {"message": "Data source not found"}
            shown = {k: v for k, v in ds.items() if k != "secureJsonData"}
            shown["secureJsonFields"] = dict.fromkeys(ds.get("secureJsonData", {}), True)
            return 200, shown
        if method == "POST" and not rest:
            ds = {"id": self._id(), "orgId": 1, "readOnly": False, "basicAuth": False, "isDefault": False, **body}
            self.datasources[body["uid"]] = ds
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added", "name": ds["name"]}
        if method == "PUT" and rest[:1] == ["uid"] and rest[1] in self.datasources:
            ds = self.datasources[rest[1]]
            ds.update(body)
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource updated", "name": ds["name"]}
        return 404, {"message": "Not found"}

    def _dashboards(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and rest[:1] == ["uid"]:
            d = self.dashboards.get(rest[1])
            if d is None:
                return 404, {"message": "Dashboard not found"}
            return 200, {"dashboard": d["dashboard"], "meta": {"folderUid": d["folderUid"], "slug": rest[1]}}
        if method == "POST" and rest == ["db"]:
            dash = copy.deepcopy(body["dashboard"])
            uid = dash["uid"]
            old = self.dashboards.get(uid)
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            dash["id"] = old["dashboard"]["id"] if old else self._id()
            dash["version"] = old["dashboard"]["version"] + 1 if old else 1
            self.dashboards[uid] = {"dashboard": dash, "folderUid": body["folderUid"]}
            return 200, {"id": dash["id"], "uid": uid, "status": "success", "version": dash["version"],
                         "url": f"/d/{uid}/x"}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = state.handle(self.command, self.path.split("?")[0], body,
                                          self.headers.get("Authorization"))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def summary(changes: list[Any]) -> dict[str, str]:
    return {f"{c.kind} {c.uid}": c.action for c in changes}


def test_first_push_creates_everything_and_second_changes_nothing(grafana: tuple[str, FakeGrafana]) -> None:
    url, g = grafana
    first = push(url, env=ENV)
    assert summary(first) == {
        f"folder {FOLDER_UID}": "create",
        f"datasource {influxql.DATASOURCE_UID}": "create",
        **{f"dashboard {uid}": "create" for uid in build.DASHBOARDS},
    }
    assert g.folders[FOLDER_UID]["title"] == FOLDER_TITLE
    ds = g.datasources[influxql.DATASOURCE_UID]
    assert (ds["url"], ds["user"], ds["jsonData"]["dbName"]) == ("http://influxdb:8086", "grafana", "kartech")
    assert ds["secureJsonData"] == {"password": "s3cret"}
    assert set(g.dashboards) == set(build.DASHBOARDS)
    assert all(d["folderUid"] == FOLDER_UID for d in g.dashboards.values())
    stored = g.dashboards["kartech-fleet"]["dashboard"]
    assert {k: v for k, v in stored.items() if k not in ("id", "version")} == build.all_dashboards()["kartech-fleet"]
    assert set(g.auth) == {f"Bearer {TOKEN}"}

    g.requests.clear()
    second = push(url, env=ENV)
    assert set(summary(second).values()) == {"unchanged"}
    assert g.writes() == []
    assert all(d["dashboard"]["version"] == 1 for d in g.dashboards.values())


def test_only_what_drifted_is_updated(grafana: tuple[str, FakeGrafana]) -> None:
    url, g = grafana
    push(url, env=ENV)
    g.dashboards["kartech-usage"]["dashboard"]["title"] = "edited in the UI"
    g.folders[FOLDER_UID]["title"] = "Renamed"
    g.requests.clear()
    changes = summary(push(url, env={**ENV, "KARTECH_INFLUX_DATABASE": "telemetry"}))
    assert changes.pop("dashboard kartech-usage") == "update"
    assert changes.pop(f"folder {FOLDER_UID}") == "update"
    assert changes.pop(f"datasource {influxql.DATASOURCE_UID}") == "update"
    assert set(changes.values()) == {"unchanged"}
    assert [(m, p) for m, p, _ in g.writes()] == [
        ("PUT", f"/api/folders/{FOLDER_UID}"),
        ("PUT", f"/api/datasources/uid/{influxql.DATASOURCE_UID}"),
        ("POST", "/api/dashboards/db"),
    ]
    assert g.dashboards["kartech-usage"]["dashboard"]["title"] == build.all_dashboards()["kartech-usage"]["title"]
    assert g.datasources[influxql.DATASOURCE_UID]["jsonData"]["dbName"] == "telemetry"
    assert "secureJsonData" not in g.writes()[1][2]  # the secret is not re-sent on update


def test_dry_run_reads_only(grafana: tuple[str, FakeGrafana]) -> None:
    url, g = grafana
    changes = push(url, dry_run=True, env=ENV)
    assert {c.action for c in changes} == {"create"}
    assert g.writes() == []
    assert (g.folders, g.datasources, g.dashboards) == ({}, {}, {})


def test_cli_push_dry_run_and_push(grafana: tuple[str, FakeGrafana], monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    url, g = grafana
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    assert main(["dashboards", "push", "--grafana", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would folder {FOLDER_UID}: create" in out
    assert "would dashboard kartech-fleet: create" in out
    assert g.writes() == []
    assert main(["dashboards", "push", "--grafana", url]) == 0
    assert "dashboard kartech-oee: create" in capsys.readouterr().out
    assert main(["dashboards", "push", "--grafana", url]) == 0
    assert capsys.readouterr().out.count(": unchanged") == 2 + len(build.DASHBOARDS)


def test_without_datasource_settings_only_dashboards_are_pushed(grafana: tuple[str, FakeGrafana]) -> None:
    url, g = grafana
    changes = push(url, env={"GRAFANA_TOKEN": TOKEN})
    assert not any(c.kind == "datasource" for c in changes)
    assert g.datasources == {}
    assert len(g.dashboards) == len(build.DASHBOARDS)


def test_a_refused_token_is_reported(grafana: tuple[str, FakeGrafana], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = grafana
    with pytest.raises(PushError, match="401"):
        push(url, env={**ENV, "GRAFANA_TOKEN": "wrong"})
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong")
    assert main(["dashboards", "push", "--grafana", url]) == 1
    assert "401" in capsys.readouterr().err
