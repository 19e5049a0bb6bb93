"""PrusaLink driver: one printer, polled over HTTP (`drivers/http_poll.py`), strictly read-only.

Every `poll_interval_s` it reads `/api/v1/status`; `/api/v1/job` only when the status names a job whose file name
it does not have yet (once per job), and `/api/v1/info` after every (re)connect. Nothing else is ever sent: no
command, no upload, no camera. A printer that cannot be reached, refuses the credentials or answers with an HTTP
error is shown offline at once and tried again with capped, jittered backoff; the loss and the recovery are logged
once each (the supervisor's lines, through `LinkWatch`).
"""

from __future__ import annotations

import httpx

from drivers.http_poll import BadPayload, HttpPoller, LinkWatch, poll_forever
from drivers.prusalink.config import PrusaLinkMachine
from drivers.prusalink.status import PrusaLinkStatus
from gateway.backoff import Backoff
from gateway.driver import DriverContext, Retry
from gateway.reading import Reading, now_ns

AUTH_HINT = {
    "digest": "check username (maker on Prusa's firmware) and password: the printer shows them under Settings > "
    "Network > PrusaLink",
    "api_key": "check api_key against the key the printer shows; a printer that shows a password wants auth digest",
    "none": "this PrusaLink asks for credentials: set auth digest with the password the printer shows",
}


class PrusaLinkDriver:
    retry = Retry(initial_s=1.0, cap_s=30.0)

    def __init__(self, machine: PrusaLinkMachine) -> None:
        self.machine = machine
        self.name = f"prusalink:{machine.id}"
        self.machine_ids = [machine.id]

    def _poller(self) -> HttpPoller:
        m = self.machine
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if m.auth == "digest":
            assert m.password is not None
            auth = httpx.DigestAuth(m.username, m.password)
        elif m.auth == "api_key":
            assert m.api_key is not None
            headers["X-Api-Key"] = m.api_key
        return HttpPoller(m.url, label=f'printer "{m.id}" ({m.name})', timeout_s=m.timeout_s, auth=auth,
                          headers=headers, auth_hint=AUTH_HINT[m.auth])

    async def run(self, ctx: DriverContext) -> None:
        m = self.machine
        model = PrusaLinkStatus(m.id, ctx.bad_input)
        watch = LinkWatch(m.id, backoff=Backoff(min(1.0, m.reconnect_max_s), m.reconnect_max_s))
        async with self._poller() as http:

            async def poll(fresh: bool) -> list[Reading]:
                out: list[Reading] = []
                if fresh:
                    try:
                        out += model.on_info((await http.get_json("/api/v1/info")).body, now_ns())
                    except BadPayload as err:
                        ctx.bad_input(err.reason, m.id, str(err))
                status = (await http.get_json("/api/v1/status")).body
                if model.needs_job(status):
                    try:
                        job = await http.get_json("/api/v1/job", answers=(200, 204))
                        model.on_job(job.status, job.body)
                    except BadPayload as err:
                        ctx.bad_input(err.reason, m.id, str(err))
                return out + model.on_status(status, now_ns())

            await poll_forever(ctx, watch, interval_s=m.poll_interval_s, poll=poll,
                               lost=lambda: model.on_lost(now_ns()))
