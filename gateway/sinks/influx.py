"""InfluxDB sink: line protocol over HTTP to 1.x (`/write`) or 2.x/3.x (`/api/v2/write`), history via InfluxQL."""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from gateway.config.models import InfluxV1, InfluxV2, Precision
from gateway.errors import SinkConfigError, SinkError
from gateway.machines import MachineMeta
from gateway.metrics import Metrics
from gateway.reading import Reading
from gateway.sinks.base import HistoryRow, Rejected, SinkRetry, WriteResult
from gateway.sinks.lineproto import QUALITY_SUFFIX, Line, LineEncoder

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


@dataclass(frozen=True)
class WriteTarget:
    """Where and how line protocol is posted: the 1.x `/write` or the 2.x/3.x `/api/v2/write` endpoint."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]
    auth: httpx.BasicAuth | None


def write_target(cfg: InfluxV1 | InfluxV2, precision: Precision | None = None) -> WriteTarget:
    """The write endpoint of `cfg`, for lines stamped in `precision` (default: the configured one)."""
    p = precision or cfg.precision
    if isinstance(cfg, InfluxV1):
        params = {"db": cfg.database, "precision": V1_PRECISION[p]}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        auth = httpx.BasicAuth(cfg.username, cfg.password or "") if cfg.username else None
        return WriteTarget(f"{cfg.url}/write", params, {}, auth)
    return WriteTarget(f"{cfg.url}/api/v2/write", {"org": cfg.org, "bucket": cfg.bucket, "precision": p},
                       {"Authorization": f"Token {cfg.token}"}, None)


class InfluxSink:
    """Writes readings to one InfluxDB; a rejected line never blocks the good ones of its batch."""

    name = "influxdb"

    def __init__(
        self,
        cfg: InfluxV1 | InfluxV2,
        machines: Mapping[str, MachineMeta],
        metrics: Metrics,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.machines = machines
        self.metrics = metrics
        self._encoder = LineEncoder(machines, cfg.precision)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(verify=cfg.verify_tls)
        self._timeout = httpx.Timeout(cfg.timeout_s)
        target = write_target(cfg)
        self._write_url, self._write_params, self._auth = target.url, target.params, target.auth
        self._headers: dict[str, str] = dict(target.headers)
        self._query_params: dict[str, str] = {"epoch": "ns"}
        self._measurement_prefix = ""
        if isinstance(cfg, InfluxV1):
            if cfg.retention_policy:
                self._measurement_prefix = quote_ident(cfg.retention_policy) + "."
            self._query_params["db"] = cfg.database
            self._target = f"database {cfg.database!r} at {cfg.url}"
        else:
            self._query_params["db"] = cfg.bucket
            self._target = f"bucket {cfg.bucket!r} (org {cfg.org!r}) at {cfg.url}"
        if cfg.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._describe_metrics()

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("sink_points_written_total", "counter", "Points (lines) a sink stored.")
        m.describe("sink_write_requests_total", "counter", "Write requests sent, by HTTP status.")
        m.describe("sink_write_errors_total", "counter", "Failed write requests, by reason.")
        m.describe("sink_write_seconds_sum", "counter", "Time spent in write requests.")
        m.describe("sink_write_seconds_count", "counter", "Write requests timed.")
        m.describe("sink_lines_rejected_total", "counter", "Lines (or readings that made no line) rejected for good.")

    # -- start-up -------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the server and target; SinkConfigError says what to fix, SinkRetry means not reachable yet."""
        if isinstance(self.cfg, InfluxV1):
            await self._open_v1(self.cfg)
        else:
            await self._open_v2()
        log.info("influxdb sink ready", extra={"target": self._target})

    async def _open_v1(self, cfg: InfluxV1) -> None:
        r = await self._request("GET", f"{cfg.url}/ping", "ping")
        if r.status_code not in (200, 204):
            raise SinkConfigError(
                f"{cfg.url}/ping answered {r.status_code}: {cfg.url} does not look like InfluxDB; "
                "check storage.influxdb.url"
            )
        names = [row[0] for row in await self._influxql("SHOW DATABASES", db=None)]
        if cfg.database not in names:
            try:
                await self._influxql(f"CREATE DATABASE {quote_ident(cfg.database)}", db=None, post=True)
            except SinkRetry:
                raise
            except (SinkError, SinkConfigError) as err:
                raise SinkConfigError(
                    f"database {cfg.database!r} does not exist at {cfg.url} and could not be created ({err}); "
                    f'create it (CREATE DATABASE "{cfg.database}") or give the user admin rights'
                ) from err
            log.info("created influxdb database", extra={"database": cfg.database})
        if cfg.retention_policy:
            rps = [row[0] for row in await self._influxql(f"SHOW RETENTION POLICIES ON {quote_ident(cfg.database)}")]
            if cfg.retention_policy not in rps:
                raise SinkConfigError(
                    f"retention policy {cfg.retention_policy!r} does not exist on database {cfg.database!r} at "
                    f"{cfg.url} (it has: {', '.join(rps)}); create it or leave retention_policy out"
                )

    async def _open_v2(self) -> None:
        r = await self._request("POST", self._write_url, "probe", params=self._write_params, content=b"")
        if r.status_code in (200, 204, 400):  # 400: the server wants at least one line, but endpoint and auth are fine
            return
        self._raise_for_status(r)

    # -- writing --------------------------------------------------------------------------------------------------

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Write readings; `written` counts readings stored, `rejected` holds what the server will never take."""
        encoded = self._encoder.encode(readings)
        rejected = list(encoded.rejected)
        written = await self._write_lines(encoded.lines, rejected) if encoded.lines else 0
        bad_lines = len(rejected)
        if bad_lines:
            self.metrics.inc("sink_lines_rejected_total", bad_lines, sink=self.name)
            log.warning("influxdb rejected lines", extra={"count": bad_lines, "reason": rejected[0].reason})
        return WriteResult(written, rejected)

    async def _write_lines(self, lines: list[Line], rejected: list[Rejected]) -> int:
        """Post lines; on 400/413/422 bisect until every bad line is isolated. Returns readings written."""
        r = await self._post(lines)
        if r is None:
            self.metrics.inc("sink_points_written_total", len(lines), sink=self.name)
            return sum(len(line.readings) for line in lines)
        if len(lines) == 1:
            reason = server_reason(r) if r.status_code != 413 else "line is larger than the server accepts (413)"
            rejected.append(Rejected(lines[0].readings, lines[0].text, reason))
            return 0
        mid = len(lines) // 2
        return await self._write_lines(lines[:mid], rejected) + await self._write_lines(lines[mid:], rejected)

    async def _post(self, lines: list[Line]) -> httpx.Response | None:
        """None when stored; the response when the batch must be split; raises for everything else."""
        body = "\n".join([line.text for line in lines]).encode()
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
        started = time.perf_counter()
        try:
            r = await self._request("POST", self._write_url, "write", params=self._write_params, content=body)
        finally:
            self.metrics.inc("sink_write_seconds_sum", time.perf_counter() - started, sink=self.name)
            self.metrics.inc("sink_write_seconds_count", sink=self.name)
        self.metrics.inc("sink_write_requests_total", sink=self.name, status=str(r.status_code))
        if r.status_code in (200, 204):
            return None
        if r.status_code not in _SPLIT:
            self._raise_for_status(r)
        self.metrics.inc("sink_write_errors_total", sink=self.name, reason="rejected")
        return r

    async def _request(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        """One HTTP request with our auth and headers; transport failures become SinkRetry."""
        headers = (
            self._headers if what != "query" else {k: v for k, v in self._headers.items() if k != "Content-Encoding"}
        )
        try:
            return await self._client.request(
                method, url, headers=headers, auth=self._auth or httpx.USE_CLIENT_DEFAULT, timeout=self._timeout, **kw
            )
        except httpx.TimeoutException as err:
            self.metrics.inc("sink_write_errors_total", sink=self.name, reason="timeout")
            raise SinkRetry(f"InfluxDB {what} to {url} timed out after {self.cfg.timeout_s:g} s") from err
        except httpx.TransportError as err:
            self.metrics.inc("sink_write_errors_total", sink=self.name, reason="connection")
            raise SinkRetry(f"cannot reach InfluxDB at {self.cfg.url} ({what}): {err or type(err).__name__}") from err

    def _raise_for_status(self, r: httpx.Response) -> NoReturn:
        """Translate a failed response into SinkConfigError (fix the config) or SinkRetry (try later)."""
        status, reason, url = r.status_code, server_reason(r), str(r.request.url.copy_with(query=None))
        kind = "auth" if status in (401, 403) else "not_found" if status == 404 else None
        if kind is None:
            kind = "throttled" if status in (429, 503) else "server" if status >= 500 or status == 408 else "config"
        self.metrics.inc("sink_write_errors_total", sink=self.name, reason=kind)
        if kind == "auth":
            what = "token" if isinstance(self.cfg, InfluxV2) else "username/password"
            raise SinkConfigError(
                f"InfluxDB at {self.cfg.url} refused the {what} ({status}: {reason}); check the {what}"
            )
        if kind == "not_found":
            raise SinkConfigError(self._not_found_message(r, url, reason))
        if "retention policy not found" in reason:
            raise SinkConfigError(f"{self._target}: {reason}; create it or leave retention_policy out")
        if kind in ("throttled", "server"):
            raise SinkRetry(f"InfluxDB at {url} answered {status}: {reason}", retry_after_s(r))
        raise SinkConfigError(f"InfluxDB at {url} answered {status}: {reason}")

    def _not_found_message(self, r: httpx.Response, url: str, reason: str) -> str:
        lowered = reason.lower()
        if any(k in lowered for k in ("database not found", "bucket", "organization")):
            return f"{self._target}: {reason}; create it or fix storage.influxdb"
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

    async def _influxql(self, q: str, *, db: str | bool | None = True, post: bool = False) -> list[list[Any]]:
        """Rows of the first series of the first statement; SinkError carries InfluxQL errors."""
        params = dict(self._query_params)
        if db is None:
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

    async def query_history(
        self, machine_id: str, signal: str, start_ns: int, end_ns: int, limit: int
    ) -> list[HistoryRow]:
        """Samples of one signal (start_ns <= ts < end_ns), oldest first, via InfluxQL on /query."""
        meta = self.machines.get(machine_id)
        if meta is None:
            return []
        q = (
            f"SELECT {quote_ident(signal)}, {quote_ident(signal + QUALITY_SUFFIX)} "  # noqa: S608 - names are quoted
            f"FROM {self._measurement_prefix}{quote_ident(meta.kind)} "
            f"WHERE machine = {quote_literal(machine_id)} AND time >= {int(start_ns)} AND time < {int(end_ns)} "
            f"ORDER BY time ASC LIMIT {int(limit)}"
        )
        out: list[HistoryRow] = []
        for ts, value, quality in await self._influxql(q):
            out.append((int(ts), value, quality or "good"))
        return out

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
