"""The notification outbox worker: delivers queued notifications with retry and capped exponential backoff.

Rows are written by the alert book in the same transaction as the alert; a row is marked sent only after its
channel accepted it, so a restart re-sends nothing that was delivered and loses nothing that was not (a crash in
the instant between delivery and marking may repeat one message: at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping

from gateway.config.operations import RetryPolicy
from gateway.notify.channels import DeliveryFailed, Sender
from gateway.reading import now_ns
from gateway.store import Store

log = logging.getLogger(__name__)

NS = 1_000_000_000
POLL_S = 1.0


class Notifier:
    def __init__(self, store: Store, senders: Mapping[str, Sender], retry: RetryPolicy, *,
                 clock: Callable[[], int] = now_ns) -> None:
        self.store = store
        self.senders = dict(senders)
        self.retry = retry
        self.clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def delay_s(self, attempts: int) -> float:
        return float(min(self.retry.max_s, self.retry.initial_s * 2 ** max(0, attempts - 1)))

    async def run_once(self) -> int:
        """Deliver everything due now; how many were delivered."""
        now = self.clock()
        rows = self.store.query("SELECT * FROM outbox WHERE status = 'pending' AND next_ns <= ? ORDER BY id LIMIT 100",
                                (now,))
        sent = 0
        for row in rows:
            sender = self.senders.get(row["channel"])
            if sender is None:
                self.store.execute("UPDATE outbox SET status = 'failed', last_error = ? WHERE id = ?",
                                   (f"channel {row['channel']!r} is no longer configured", row["id"]))
                continue
            try:
                await sender.send(json.loads(row["payload"]))
            except DeliveryFailed as err:
                attempts = row["attempts"] + 1
                give_up = not err.retry or attempts >= self.retry.max_attempts
                delay = max(self.delay_s(attempts), err.retry_after_s or 0.0)
                self.store.execute("UPDATE outbox SET attempts = ?, last_error = ?, status = ?, next_ns = ? "
                                   "WHERE id = ?", (attempts, str(err), "failed" if give_up else "pending",
                                                    self.clock() + int(delay * NS), row["id"]))
                if give_up:
                    log.error("notification %s via %s given up after %d attempt(s): %s", row["id"], row["channel"],
                              attempts, err)
                elif attempts == 1:
                    log.warning("notification %s via %s failed (%s); retrying with backoff", row["id"],
                                row["channel"], err)
                continue
            except Exception as err:
                log.exception("notification %s via %s: unexpected error", row["id"], row["channel"])
                self.store.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_ns = ? "
                                   "WHERE id = ?",
                                   (f"{type(err).__name__}: {err}", self.clock() + int(self.retry.max_s * NS),
                                    row["id"]))
                continue
            self.store.execute("UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_ns = ?, "
                               "last_error = NULL WHERE id = ?", (self.clock(), row["id"]))
            sent += 1
        return sent

    def _next_due_s(self) -> float:
        row = self.store.one("SELECT MIN(next_ns) AS n FROM outbox WHERE status = 'pending'")
        if row is None or row["n"] is None:
            return POLL_S * 5
        return float(max(0.0, min(POLL_S * 5, (row["n"] - self.clock()) / NS)))

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_due_s()):
                    await self._wake.wait()

    def stats(self) -> dict[str, int]:
        rows = self.store.query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        return {r["status"]: r["n"] for r in rows}
