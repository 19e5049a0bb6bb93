"""OctoPrint driver: one printer behind one OctoPrint server, polled over HTTP (`drivers/http_poll.py`).

Every `poll_interval_s` it reads `GET /api/printer` and `GET /api/job` with the `X-Api-Key` header — nothing
else, never a command. A 409 from /api/printer (OctoPrint is up, the printer is not connected) is read as a
state; an unreachable OctoPrint, a refused key or an HTTP error shows the machine offline at once and is tried
again with capped, jittered backoff, its loss and recovery logged once each (through `LinkWatch`).
"""

from __future__ import annotations

from drivers.http_poll import HttpPoller, LinkWatch, poll_forever
from drivers.octoprint.config import OctoPrintMachine
from drivers.octoprint.status import OctoPrintStatus
from gateway.backoff import Backoff
from gateway.driver import DriverContext, Retry
from gateway.reading import Reading, now_ns

AUTH_HINT = ("check api_key: OctoPrint > Settings > Application Keys (or the user's API key); the key's user needs "
             "the STATUS permission")


class OctoPrintDriver:
    retry = Retry(initial_s=1.0, cap_s=30.0)

    def __init__(self, machine: OctoPrintMachine) -> None:
        self.machine = machine
        self.name = f"octoprint:{machine.id}"
        self.machine_ids = [machine.id]
        # the job in progress outlives a reconnect (or a restart of the driver): no second job start
        self.model = OctoPrintStatus(machine.id, self._bad, tool=machine.tool)
        self._ctx: DriverContext | None = None

    def _bad(self, reason: str, machine: str | None, detail: str) -> None:
        if self._ctx is not None:
            self._ctx.bad_input(reason, machine, detail)

    async def run(self, ctx: DriverContext) -> None:
        m = self.machine
        self._ctx = ctx
        watch = LinkWatch(m.id, backoff=Backoff(min(1.0, m.reconnect_max_s), m.reconnect_max_s))
        async with HttpPoller(m.url, label=f'printer "{m.id}" ({m.name}) via OctoPrint', timeout_s=m.timeout_s,
                              headers={"X-Api-Key": m.api_key}, auth_hint=AUTH_HINT) as http:

            async def poll(fresh: bool) -> list[Reading]:
                printer = await http.get_json("/api/printer", answers=(200, 409))
                job = await http.get_json("/api/job")
                return self.model.on_poll(printer.status, printer.body, job.body, now_ns())

            await poll_forever(ctx, watch, interval_s=m.poll_interval_s, poll=poll,
                               lost=lambda: self.model.on_lost(now_ns()))
