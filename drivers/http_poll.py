"""What every network printer driver shares: whether a printer can be read (said once), and HTTP polling.

Two parts, usable apart:

- `LinkWatch` knows nothing of HTTP. It follows one machine's link: the first failure is reported through
  `ctx.disconnected(error, [machine])` — the supervisor logs that one line — and a failure of another kind while
  still down (say, the printer answers again but refuses the credentials) is logged once more; the first success
  afterwards is reported through `ctx.connected([machine])`, which logs the one "recovered" line. Between failures
  it hands out capped, jittered delays (`gateway.backoff.Backoff`). A WebSocket driver (Moonraker) uses it the
  same way around its connect/receive loop.
- `HttpPoller` is one printer's HTTP API on an `httpx.AsyncClient` (keep-alive, per-request timeouts, Digest or
  header authentication, never blocking the event loop). `get_json` returns the status code and the decoded body,
  or raises `LinkDown` (unreachable, refused credentials, an HTTP error) or `BadPayload` (an answer that is not
  the JSON expected; counted as bad input by the caller, the printer stays online).

`poll_forever` joins them: poll, emit, wait out the interval; on `LinkDown` emit the "offline" readings once and
wait as long as the watch says. Drivers built on it serve one machine each (a connection per printer, as OPC UA),
so the supervisor's once-only lines are the printer's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from gateway.backoff import Backoff
from gateway.driver import DriverContext
from gateway.reading import Reading

log = logging.getLogger(__name__)

_URL = re.compile(r"^https?://[^/\s@?#]+(?P<path>/[^\s?#]*)?$")


def base_url(v: str, example: str, *, path: bool) -> str:
    """A printer's base address for a config validator: scheme, host, port, and a path only where `path` (an
    API behind a reverse proxy); the API's own paths are the driver's business."""
    if "@" in v.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError("has credentials in it; give them in their own keys, as ${ENV_VAR}")
    m = _URL.match(v)
    if m is None or (not path and m["path"] not in (None, "/")):
        raise ValueError(f"is not the printer's base address; use e.g. {example}")
    return v.rstrip("/")


FailureKind = Literal["unreachable", "credentials", "http_error"]


class LinkDown(Exception):
    """The machine cannot be read now; `kind` groups the reasons that need the same fix."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BadPayload(Exception):
    """The machine answered, but not with what its API documents; `reason` is a bad-input label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class LinkWatch:
    """One machine's link: reported once when lost, once when back, and the delay before the next attempt."""

    def __init__(self, machine_id: str, *, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self.machine_id = machine_id
        self.backoff = backoff
        self.clock = clock
        self.online: bool | None = None  # None until the first attempt ended
        self.down_kind: str | None = None
        self.down_since: float | None = None

    def up(self, ctx: DriverContext) -> bool:
        """Reading worked. True when the link was down or never up (the caller announces everything again)."""
        if self.online:
            return False
        ctx.connected([self.machine_id])
        self.backoff.reset()
        self.online, self.down_kind, self.down_since = True, None, None
        return True

    def down(self, ctx: DriverContext, kind: str, error: str) -> float:
        """Reading failed with `error` (of `kind`): told once per kind while down; returns seconds to wait."""
        if self.down_kind is None:
            ctx.disconnected(error, [self.machine_id])  # the supervisor logs the loss, once
            self.down_since = self.clock()
        elif kind != self.down_kind:
            log.warning("%s still cannot be read, now: %s", self.machine_id, error,
                        extra={"machine": self.machine_id, "reason": kind})
            ctx.disconnected(error, [self.machine_id])
        self.online, self.down_kind = False, kind
        return self.backoff.next()


@dataclass(frozen=True)
class Answer:
    status: int
    body: object  # decoded JSON; None for an empty answer (204)


class HttpPoller:
    """One printer's HTTP API: GETs that return decoded JSON or say plainly why they could not."""

    def __init__(self, base_url: str, *, label: str, timeout_s: float, auth: httpx.Auth | None = None,
                 headers: Mapping[str, str] | None = None, auth_hint: str = "check the credentials") -> None:
        self.base_url = base_url.rstrip("/")
        self.label = label  # names the printer in every message, e.g. 'printer "mk4-01" (Prusa MK4 №1)'
        self.auth_hint = auth_hint
        self.client = httpx.AsyncClient(base_url=self.base_url, auth=auth, headers=dict(headers or {}),
                                        timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                        trust_env=False)

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> HttpPoller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get_json(self, path: str, *, answers: Collection[int] = (200,)) -> Answer:
        """GET `path`; `answers` are the statuses that carry a documented answer (e.g. 204, or OctoPrint's 409)."""
        url = f"{self.base_url}{path}"
        try:
            resp = await self.client.get(path, headers={"Accept": "application/json"})
        except httpx.TimeoutException as err:
            raise LinkDown("unreachable", f"{self.label} at {url} did not answer in time ({type(err).__name__}); "
                           "is it switched on and on the network?") from err
        except httpx.HTTPError as err:  # connect refused, reset, DNS, protocol errors
            raise LinkDown("unreachable", f"{self.label} at {url} cannot be reached: {type(err).__name__}: "
                           f"{err or 'connection failed'}; is it switched on and on the network?") from err
        if resp.status_code in (401, 403):
            raise LinkDown("credentials", f"{self.label} at {url} refused the gateway's credentials (HTTP "
                           f"{resp.status_code}); {self.auth_hint}")
        if resp.status_code not in answers:
            raise LinkDown("http_error", f"{self.label} at {url} answered HTTP {resp.status_code} "
                           f"{resp.reason_phrase}: {resp.text[:120]!r}")
        if not resp.content:
            return Answer(resp.status_code, None)
        try:
            return Answer(resp.status_code, json.loads(resp.content))
        except (ValueError, UnicodeDecodeError) as err:
            raise BadPayload("malformed_json", f"{path}: {err}") from err


async def poll_forever(ctx: DriverContext, watch: LinkWatch, *, interval_s: float,
                       poll: Callable[[bool], Awaitable[Sequence[Reading]]],
                       lost: Callable[[], Sequence[Reading]]) -> None:
    """Poll until cancelled. `poll(fresh)` reads the machine once (`fresh`: first read after a connect or a loss)
    and raises `LinkDown` or `BadPayload`; `lost()` gives the readings that say the machine is offline."""
    fresh = True
    while True:
        started = time.monotonic()
        try:
            readings = await poll(fresh)
        except LinkDown as err:
            if watch.online is not False:
                await ctx.emit(lost())
            fresh = True
            await asyncio.sleep(watch.down(ctx, err.kind, str(err)))
            continue
        except BadPayload as err:
            ctx.bad_input(err.reason, watch.machine_id, str(err))
            readings = []
        else:
            fresh = False
        watch.up(ctx)
        if readings:
            await ctx.emit(readings)
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
