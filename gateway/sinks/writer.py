"""The one InfluxDB HTTP writer: line protocol to 1.x (`/write`) or 2.x/3.x (`/api/v2/write`), InfluxQL on `/query`.

Used by the telemetry sink, the self-metrics writer and the event/OEE/maintenance/usage exporters, so all of them
share auth, gzip, precision, timeouts, TLS verification and one error classification:

- `SinkRetry` — nothing may be assumed stored and a retry can help (unreachable, timeout, 408, 429, 5xx); it keeps
  the server's Retry-After;
- `SinkConfigError` — retrying will not help until the configuration changes (credentials, a URL that is not
  InfluxDB, a missing database, bucket or retention policy);
- rejected lines (400, 413, 422) — the batch is bisected until every bad line is isolated; the good lines are
  stored and `write` returns the bad ones with the server's message.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from gateway.config.models import InfluxV1, InfluxV2, Precision
from gateway.errors import SinkConfigError, SinkError
from gateway.metrics import Metrics
from gateway.sinks.base import SinkRetry

log = logging.getLogger(__name__)

V1_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}
_SPLIT = frozenset({400, 413, 422})
_MAX_REASON = 1000


def quote_ident(s: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_literal(s: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def server_reason(r: httpx.Response) -> str:
    """The error text of a response: 1.x `{"error"}`, 2.x `{"message"}`, or the plain body."""
    text = r.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:_MAX_REASON]
    if isinstance(body, dict):
        msg = body.get("error") or body.get("message")
        if isinstance(msg, str):
            return msg[:_MAX_REASON]
    return text[:_MAX_REASON]


def retry_after_s(r: httpx.Response) -> float | None:
    """Retry-After as seconds (it may be a number or an HTTP date)."""
    value = r.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A line the server will never accept (bad data, not a bad moment): its index in the batch and why."""

    index: int
    text: str
    reason: str


class InfluxWriter:
    """Posts line protocol to one InfluxDB; a rejected line never blocks the good ones of its batch.

    Lines carry timestamps in the configured precision unless `write` is told otherwise. `metrics`, when given,
    counts requests, points, errors and time under the label `sink=name`. A client passed in is the caller's to
    close; without one the writer builds its own (with the configured TLS verification) and closes it.
    """

    def __init__(
        self,
        cfg: InfluxV1 | InfluxV2,
        client: httpx.AsyncClient | None = None,
        *,
        metrics: Metrics | None = None,
        name: str = "influxdb",
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.name = name
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(verify=cfg.verify_tls)
        self._timeout = httpx.Timeout(cfg.timeout_s)
        self._query_params: dict[str, str] = {"epoch": "ns"}
        self._write_headers: dict[str, str] = {"Content-Encoding": "gzip"} if cfg.gzip else {}
        self._auth: httpx.BasicAuth | None = None
        if isinstance(cfg, InfluxV1):
            self.write_url = f"{cfg.url}/write"
            self._write_params = {"db": cfg.database}
            if cfg.retention_policy:
                self._write_params["rp"] = cfg.retention_policy
            if cfg.username:
                self._auth = httpx.BasicAuth(cfg.username, cfg.password or "")
            self._headers: dict[str, str] = {}
            self._query_params["db"] = cfg.database
            self.target = f"database {cfg.database!r} at {cfg.url}"
        else:
            self.write_url = f"{cfg.url}/api/v2/write"
            self._write_params = {"org": cfg.org, "bucket": cfg.bucket}
            self._headers = {"Authorization": f"Token {cfg.token}"}
            self._query_params["db"] = cfg.bucket
            self.target = f"bucket {cfg.bucket!r} (org {cfg.org!r}) at {cfg.url}"

    def _params(self, precision: Precision | None) -> dict[str, str]:
        p = precision or self.cfg.precision
        return {**self._write_params, "precision": V1_PRECISION[p] if isinstance(self.cfg, InfluxV1) else p}

    def _inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(name, value, sink=self.name, **labels)

    # -- start-up -------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the server and target (1.x: create the database when missing); SinkConfigError says what to fix,
        SinkRetry means not reachable yet."""
        if isinstance(self.cfg, InfluxV1):
            await self._open_v1(self.cfg)
        else:
            r = await self._request("POST", self.write_url, "probe", write=True, params=self._params(None),
                                    content=b"")
            if r.status_code not in (200, 204, 400):  # 400: the server wants a line, but endpoint and auth are fine
                self._raise_for_status(r)

    async def _open_v1(self, cfg: InfluxV1) -> None:
        r = await self._request("GET", f"{cfg.url}/ping", "ping", write=True)
        if r.status_code not in (200, 204):
            raise SinkConfigError(
                f"{cfg.url}/ping answered {r.status_code}: {cfg.url} does not look like InfluxDB; "
                "check storage.influxdb.url"
            )
        names = [row[0] for row in await self.influxql("SHOW DATABASES", db=False)]
        if cfg.database not in names:
            try:
                await self.influxql(f"CREATE DATABASE {quote_ident(cfg.database)}", db=False, post=True)
            except SinkRetry:
                raise
            except (SinkError, SinkConfigError) as err:
                raise SinkConfigError(
                    f"database {cfg.database!r} does not exist at {cfg.url} and could not be created ({err}); "
                    f'create it (CREATE DATABASE "{cfg.database}") or give the user admin rights'
                ) from err
            log.info("created influxdb database", extra={"database": cfg.database})
        if cfg.retention_policy:
            rps = [row[0] for row in await self.influxql(f"SHOW RETENTION POLICIES ON {quote_ident(cfg.database)}")]
            if cfg.retention_policy not in rps:
                raise SinkConfigError(
                    f"retention policy {cfg.retention_policy!r} does not exist on database {cfg.database!r} at "
                    f"{cfg.url} (it has: {', '.join(rps)}); create it or leave retention_policy out"
                )

    # -- writing --------------------------------------------------------------------------------------------------

    async def write(self, lines: Sequence[str], *, precision: Precision | None = None) -> list[RejectedLine]:
        """Store `lines` (timestamps in `precision`, default the configured one); returns those the server will
        never take (the others are stored). Raises SinkRetry or SinkConfigError when nothing may be assumed
        stored."""
        rejected: list[RejectedLine] = []
        if lines:
            await self._write(lines, 0, len(lines), self._params(precision), rejected)
        return rejected

    async def _write(self, lines: Sequence[str], lo: int, hi: int, params: dict[str, str],
                     rejected: list[RejectedLine]) -> None:
        """Post lines[lo:hi]; on 400/413/422 bisect until every bad line is isolated."""
        r = await self._post(lines[lo:hi], params)
        if r is None:
            self._inc("sink_points_written_total", hi - lo)
            return
        if hi - lo == 1:
            reason = server_reason(r) if r.status_code != 413 else "line is larger than the server accepts (413)"
            rejected.append(RejectedLine(lo, lines[lo], reason))
            return
        mid = (lo + hi) // 2
        await self._write(lines, lo, mid, params, rejected)
        await self._write(lines, mid, hi, params, rejected)

    async def _post(self, lines: Sequence[str], params: dict[str, str]) -> httpx.Response | None:
        """None when stored; the response when the batch must be split; raises for everything else."""
        body = "\n".join(lines).encode()
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
        started = time.perf_counter()
        try:
            r = await self._request("POST", self.write_url, "write", write=True, params=params, content=body)
        finally:
            self._inc("sink_write_seconds_sum", time.perf_counter() - started)
            self._inc("sink_write_seconds_count")
        self._inc("sink_write_requests_total", status=str(r.status_code))
        if r.status_code in (200, 204):
            return None
        if r.status_code not in _SPLIT:
            self._raise_for_status(r)
        self._inc("sink_write_errors_total", reason="rejected")
        return r

    async def _request(self, method: str, url: str, what: str, *, write: bool = False, **kw: Any) -> httpx.Response:
        """One HTTP request with our auth and headers; transport failures become SinkRetry."""
        headers = {**self._headers, **self._write_headers} if write else self._headers
        try:
            return await self._client.request(
                method, url, headers=headers, auth=self._auth or httpx.USE_CLIENT_DEFAULT, timeout=self._timeout, **kw
            )
        except httpx.TimeoutException as err:
            self._inc("sink_write_errors_total", reason="timeout")
            raise SinkRetry(f"InfluxDB {what} to {url} timed out after {self.cfg.timeout_s:g} s") from err
        except httpx.TransportError as err:
            self._inc("sink_write_errors_total", reason="connection")
            raise SinkRetry(f"cannot reach InfluxDB at {self.cfg.url} ({what}): {err or type(err).__name__}") from err

    def _raise_for_status(self, r: httpx.Response) -> NoReturn:
        """Translate a failed response into SinkConfigError (fix the config) or SinkRetry (try later)."""
        status, reason, url = r.status_code, server_reason(r), str(r.request.url.copy_with(query=None))
        kind = "auth" if status in (401, 403) else "not_found" if status == 404 else None
        if kind is None:
            kind = "throttled" if status in (429, 503) else "server" if status >= 500 or status == 408 else "config"
        self._inc("sink_write_errors_total", reason=kind)
        if kind == "auth":
            what = "token" if isinstance(self.cfg, InfluxV2) else "username/password"
            raise SinkConfigError(
                f"InfluxDB at {self.cfg.url} refused the {what} ({status}: {reason}); check the {what}"
            )
        if kind == "not_found":
            raise SinkConfigError(self._not_found_message(r, url, reason))
        if "retention policy not found" in reason:
            raise SinkConfigError(f"{self.target}: {reason}; create it or leave retention_policy out")
        if kind in ("throttled", "server"):
            raise SinkRetry(f"InfluxDB at {url} answered {status}: {reason}", retry_after_s(r))
        raise SinkConfigError(f"InfluxDB at {url} answered {status}: {reason}")

    def _not_found_message(self, r: httpx.Response, url: str, reason: str) -> str:
        lowered = reason.lower()
        if any(k in lowered for k in ("database not found", "bucket", "organization")):
            return f"{self.target}: {reason}; create it or fix storage.influxdb"
        server = r.headers.get("x-influxdb-version", "")
        if isinstance(self.cfg, InfluxV2):
            if server.startswith("1."):
                looks = f"the server is InfluxDB {server}, which has no /api/v2/write (1.x added it in 1.8)"
            else:
                looks = "the server looks like InfluxDB 1.x before 1.8, which has no /api/v2/write"
            return f"{url} does not exist (404): {looks}; use version: 1 with database (and username/password)"
        return (
            f"{url} does not exist (404): not an InfluxDB 1.x write endpoint; for InfluxDB 2.x/3.x use version: 2 or 3"
        )

    # -- reading back ---------------------------------------------------------------------------------------------

    async def influxql(self, q: str, *, db: bool = True, post: bool = False) -> list[list[Any]]:
        """Rows of the first series of the first statement (`db=False`: no database, for SHOW/CREATE DATABASE);
        SinkError carries InfluxQL errors."""
        params = dict(self._query_params)
        if not db:
            params.pop("db")
        params["q"] = q
        url = f"{self.cfg.url}/query"
        r = await self._request("POST" if post else "GET", url, "query", params=params)
        if r.status_code != 200:
            self._raise_for_status(r)
        result = r.json()["results"][0]
        if "error" in result:
            raise SinkError(f"InfluxQL {q!r} failed at {self.cfg.url}: {result['error']}")
        series = result.get("series") or [{}]
        return list(series[0].get("values") or [])

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
