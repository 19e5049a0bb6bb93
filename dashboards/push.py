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

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards import build, influxql
from dashboards.panels import FOLDER_TITLE, FOLDER_UID

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


class Pusher:
    def __init__(self, api: GrafanaApi, *, datasource: dict[str, Any] | None, dry_run: bool = False) -> None:
        self.api = api
        self.datasource = datasource
        self.dry_run = dry_run

    def _get(self, what: str, call: Any, *args: Any) -> Any | None:
        """A GET that may answer 404 (None)."""
        try:
            return call(*args)
        except GrafanaClientError as err:
            if err.status_code == 404:
                return None
            raise PushError(f"Grafana refused to read {what}: {err.status_code} {err.message}") from err

    def folder(self) -> Change:
        have = self._get(f"folder {FOLDER_UID}", self.api.folder.get_folder, FOLDER_UID)
        if have is None:
            if not self.dry_run:
                self.api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            return Change("folder", FOLDER_UID, "create", FOLDER_TITLE)
        if have.get("title") != FOLDER_TITLE:
            if not self.dry_run:
                self.api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
            return Change("folder", FOLDER_UID, "update", "title")
        return Change("folder", FOLDER_UID, "unchanged")

    def push_datasource(self, want: dict[str, Any]) -> Change:
        uid = want["uid"]
        have = self._get(f"datasource {uid}", self.api.datasource.get_datasource_by_uid, uid)
        if have is None:
            if not self.dry_run:
                self.api.datasource.create_datasource(want)
            return Change("datasource", uid, "create", want["url"])
        compared = {k: v for k, v in want.items() if k != "secureJsonData"}
        diff = _differs(compared, have)
        if diff:
            if not self.dry_run:
                self.api.datasource.update_datasource_by_uid(uid, compared)
            return Change("datasource", uid, "update", ", ".join(diff))
        return Change("datasource", uid, "unchanged")

    def dashboard(self, uid: str, want: dict[str, Any]) -> Change:
        have = self._get(f"dashboard {uid}", self.api.dashboard.get_dashboard, uid)
        if have is not None:
            same = not _dashboard_differs(want, have.get("dashboard", {}))
            in_folder = have.get("meta", {}).get("folderUid") == FOLDER_UID
            if same and in_folder:
                return Change("dashboard", uid, "unchanged")
            detail = ", ".join(x for x, bad in (("content", not same), ("folder", not in_folder)) if bad)
        if not self.dry_run:
            self.api.dashboard.update_dashboard({
                "dashboard": {**want, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                "message": "kartech dashboards push",
            })
        return Change("dashboard", uid, "create") if have is None else Change("dashboard", uid, "update", detail)

    def run(self) -> list[Change]:
        try:
            changes = [self.folder()]
            if self.datasource is not None:
                changes.append(self.push_datasource(self.datasource))
            for uid, data in build.all_dashboards().items():
                changes.append(self.dashboard(uid, data))
        except GrafanaException as err:
            raise PushError(f"Grafana answered {err.status_code}: {err.message}") from err
        except OSError as err:
            raise PushError(f"cannot reach Grafana: {err}") from err
        return changes


def connect(url: str, token: str | None, timeout_s: float = 10.0) -> GrafanaApi:
    """A client for `url` (user:password@ in the URL also works) with a service-account token, if given."""
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token or None, timeout=timeout_s)
    return api


def push(url: str, *, dry_run: bool = False, env: Mapping[str, str] | None = None) -> list[Change]:
    env = os.environ if env is None else env
    api = connect(url, env.get(TOKEN_ENV))
    return Pusher(api, datasource=datasource_from_env(env), dry_run=dry_run).run()
