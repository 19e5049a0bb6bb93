"""`kartech dashboards push`: create or update the folder, the datasource and the dashboards in a Grafana.

Idempotent: everything is read first and only what differs is written, so a second push changes nothing.
Dashboards are compared without the `id` and `version` Grafana adds; the datasource without its secret (Grafana
never returns `secureJsonData`), which is sent only when the datasource is created — rotate it in Grafana or
with provisioning. `--dry-run` performs the reads and reports the plan without writing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from dashboards import build, influxql
from dashboards.panels import FOLDER_TITLE, FOLDER_UID
from gateway.redact import redact

TOKEN_ENV = "GRAFANA_TOKEN"
Action = Literal["create", "update", "unchanged"]
_IGNORED_DASHBOARD_KEYS = frozenset({"id", "version"})


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says what to check."""


@dataclass(frozen=True)
class Change:
    kind: Literal["folder", "datasource", "dashboard"]
    uid: str
    action: Action
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.uid}: {self.action}" + (f" ({self.detail})" if self.detail else "")


def datasource_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The datasource body from KARTECH_INFLUX_*; None when KARTECH_INFLUX_URL is not set."""
    url = env.get(build.ENV_URL)
    if not url:
        return None
    body: dict[str, Any] = {
        "name": influxql.DATASOURCE_NAME,
        "uid": influxql.DATASOURCE_UID,
        "type": influxql.PLUGIN_ID,
        "access": "proxy",
        "url": url,
        "user": env.get(build.ENV_USER, ""),
        "jsonData": {
            "version": "InfluxQL",
            "dbName": env.get(build.ENV_DATABASE, "kartech"),
            "httpMode": "POST",
            "timeInterval": "1s",
        },
    }
    if env.get(build.ENV_PASSWORD):
        body["secureJsonData"] = {"password": env[build.ENV_PASSWORD]}
    return body


def _differs(want: Any, have: Any, path: str = "") -> list[str]:
    """Paths where `have` lacks or differs from `want` (keys Grafana adds on its own are not compared)."""
    if isinstance(want, dict) and isinstance(have, dict):
        out: list[str] = []
        for k, v in want.items():
            out += _differs(v, have.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if want == have else [path or "value"]


def _without_ids(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _IGNORED_DASHBOARD_KEYS}


def _dashboard_differs(want: dict[str, Any], have: dict[str, Any]) -> bool:
    return _without_ids(want) != _without_ids(have)


class GrafanaApi:
    """The few calls of Grafana's HTTP API we use, over httpx. A token goes in `Authorization: Bearer`;
    without one, user:password@ in the URL is sent as basic auth (and never printed)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        parsed = httpx.URL(url)
        auth = None
        if parsed.userinfo and not token:
            auth = httpx.BasicAuth(parsed.username, parsed.password or "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = str(parsed.copy_with(username=None, password=None)).rstrip("/")
        self.client = httpx.Client(base_url=self.base, headers=headers, auth=auth, timeout=timeout_s)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, what: str, body: Any = None) -> Any | None:
        """The JSON answer; None for a 404 to a GET; PushError for every other failure."""
        try:
            r = self.client.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise PushError(f"cannot reach Grafana at {self.base}: {redact(str(err)) or type(err).__name__}") from err
        if r.status_code == 404 and method == "GET":
            return None
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            verb = "read" if method == "GET" else "write"
            raise PushError(f"Grafana answered {r.status_code} to {verb} {what}: {message}")
        return r.json() if r.content else {}


class Pusher:
    def __init__(self, api: GrafanaApi, *, datasource: dict[str, Any] | None, dry_run: bool = False) -> None:
        self.api = api
        self.datasource = datasource
        self.dry_run = dry_run

    def folder(self) -> Change:
        what = f"folder {FOLDER_UID}"
        have = self.api.request("GET", f"/api/folders/{FOLDER_UID}", what)
        if have is None:
            if not self.dry_run:
                self.api.request("POST", "/api/folders", what, {"uid": FOLDER_UID, "title": FOLDER_TITLE})
            return Change("folder", FOLDER_UID, "create", FOLDER_TITLE)
        if have.get("title") != FOLDER_TITLE:
            if not self.dry_run:
                self.api.request("PUT", f"/api/folders/{FOLDER_UID}", what,
                                 {"title": FOLDER_TITLE, "overwrite": True})
            return Change("folder", FOLDER_UID, "update", "title")
        return Change("folder", FOLDER_UID, "unchanged")

    def push_datasource(self, want: dict[str, Any]) -> Change:
        uid = want["uid"]
        what = f"datasource {uid}"
        have = self.api.request("GET", f"/api/datasources/uid/{uid}", what)
        if have is None:
            if not self.dry_run:
                self.api.request("POST", "/api/datasources", what, want)
            return Change("datasource", uid, "create", want["url"])
        compared = {k: v for k, v in want.items() if k != "secureJsonData"}
        diff = _differs(compared, have)
        if diff:
            if not self.dry_run:
                self.api.request("PUT", f"/api/datasources/uid/{uid}", what, compared)
            return Change("datasource", uid, "update", ", ".join(diff))
        return Change("datasource", uid, "unchanged")

    def dashboard(self, uid: str, want: dict[str, Any]) -> Change:
        have = self.api.request("GET", f"/api/dashboards/uid/{uid}", f"dashboard {uid}")
        if have is not None:
            same = not _dashboard_differs(want, have.get("dashboard", {}))
            in_folder = have.get("meta", {}).get("folderUid") == FOLDER_UID
            if same and in_folder:
                return Change("dashboard", uid, "unchanged")
            detail = ", ".join(x for x, bad in (("content", not same), ("folder", not in_folder)) if bad)
        if not self.dry_run:
            self.api.request("POST", "/api/dashboards/db", f"dashboard {uid}", {
                "dashboard": {**want, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                "message": "kartech dashboards push",
            })
        return Change("dashboard", uid, "create") if have is None else Change("dashboard", uid, "update", detail)

    def run(self) -> list[Change]:
        changes = [self.folder()]
        if self.datasource is not None:
            changes.append(self.push_datasource(self.datasource))
        for uid, data in build.all_dashboards().items():
            changes.append(self.dashboard(uid, data))
        return changes


def connect(url: str, token: str | None, timeout_s: float = 10.0) -> GrafanaApi:
    """A client for `url` (user:password@ in the URL also works) with a service-account token, if given."""
    return GrafanaApi(url, token or None, timeout_s)


def push(url: str, *, dry_run: bool = False, env: Mapping[str, str] | None = None) -> list[Change]:
    env = os.environ if env is None else env
    api = connect(url, env.get(TOKEN_ENV))
    try:
        return Pusher(api, datasource=datasource_from_env(env), dry_run=dry_run).run()
    finally:
        api.close()
