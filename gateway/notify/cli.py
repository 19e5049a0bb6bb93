"""`kartech alerts test-notify --config FILE [--channel ID]`: send a test message through each channel."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import httpx

from gateway.notify.channels import DeliveryFailed, build_senders
from gateway.reading import now_ns
from gateway.state.model import iso


def test_payload(site_id: str) -> dict[str, Any]:
    now = iso(now_ns())
    return {"site": site_id, "transition": "test", "alert": {
        "id": 0, "rule": "test-notify", "machine": "gateway", "lab": None, "severity": "low", "state": "test",
        "count": 1, "raised": now, "last_raised": now,
        "message": {"en": "Test message from Kartech Gateway: this channel works.",
                    "ru": "Проверка связи от Kartech Gateway: канал работает."}}}


async def send_tests(cfg: Any, channel: str | None, out: Any = sys.stdout) -> int:
    channels = [c for c in cfg.notifications.channels if channel is None or c.id == channel]
    if not channels:
        known = ", ".join(c.id for c in cfg.notifications.channels) or "none configured"
        print(f"no notification channel {channel!r} (channels: {known})" if channel else
              "no notification channels configured under notifications.channels", file=out)
        return 1
    failed = 0
    async with httpx.AsyncClient() as client:
        senders = build_senders(channels, cfg.mqtt.brokers, cfg.site.id, client)
        for ch in channels:
            try:
                await senders[ch.id].send(test_payload(cfg.site.id))
            except DeliveryFailed as err:
                failed += 1
                print(f"{ch.id} ({ch.type}): FAILED — {err}", file=out)
                continue
            print(f"{ch.id} ({ch.type}): sent", file=out)
    return 1 if failed else 0


def cmd_test_notify(args: argparse.Namespace) -> int:
    from gateway.config.loader import load
    from gateway.registry import discover

    cfg = load(args.config, discover())
    return asyncio.run(send_tests(cfg, args.channel))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = sub.add_parser("alerts", help="alert tools")
    asub = alerts.add_subparsers(dest="alerts_command", required=True)
    t = asub.add_parser("test-notify", help="send a test message through every notification channel (or one)")
    t.add_argument("--config", required=True, help="site YAML file")
    t.add_argument("--channel", default=None, help="only this channel id")
    t.set_defaults(func=cmd_test_notify)
