"""Notification channels at the HTTP boundary (Telegram's API and a webhook replaced by httpx.MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.config.operations import TelegramChannel, WebhookChannel
from gateway.notify.channels import DeliveryFailed, TelegramSender, WebhookSender, subject, text

PAYLOAD: dict[str, Any] = {"site": "krg", "transition": "raised", "alert": {
    "id": 7, "rule": "printer-thermal-runaway", "machine": "x1c-02", "lab": "printfarm", "severity": "critical",
    "count": 1, "raised": "2026-11-18T07:00:00.000Z", "last_raised": "2026-11-18T07:00:00.000Z",
    "message": {"en": "Nozzle at 262 degC above target", "ru": "Сопло 262 degC выше заданной"}}}


def telegram(handler: Any) -> TelegramSender:
    cfg = TelegramChannel(id="tg", type="telegram", token="123:SECRET", chat_id="-10042")
    return TelegramSender(cfg, httpx.AsyncClient(transport=httpx.MockTransport(handler)))


async def test_telegram_sends_both_languages_to_the_chat() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "result": {"message_id": 1}})

    await telegram(handler).send(PAYLOAD)
    [req] = seen
    assert str(req.url) == "https://api.telegram.org/bot123:SECRET/sendMessage"
    body = json.loads(req.content)
    assert body["chat_id"] == "-10042"
    assert body["text"].startswith("[CRITICAL] x1c-02: Nozzle at 262 degC above target\n\nСопло 262 degC")


@pytest.mark.parametrize(("status", "body", "retry", "after", "message"), [
    (429, {"ok": False, "parameters": {"retry_after": 17}}, True, 17.0, "Telegram asks to slow down (429)"),
    (401, {"ok": False, "description": "Unauthorized"}, False, None,
     "Telegram answered 401: Unauthorized; check the bot token and chat_id"),
    (502, {"ok": False, "description": "Bad Gateway"}, True, None,
     "Telegram answered 502: Bad Gateway; check the bot token and chat_id"),
])
async def test_telegram_errors(status: int, body: dict[str, Any], retry: bool, after: float | None,
                               message: str) -> None:
    sender = telegram(lambda request: httpx.Response(status, json=body))
    with pytest.raises(DeliveryFailed) as err:
        await sender.send(PAYLOAD)
    assert (str(err.value), err.value.retry, err.value.retry_after_s) == (message, retry, after)


async def test_telegram_never_leaks_the_token_when_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DeliveryFailed) as err:
        await telegram(handler).send(PAYLOAD)
    assert "SECRET" not in str(err.value)
    assert str(err.value) == "Telegram Bot API at https://api.telegram.org not reachable: ConnectError"


async def test_webhook_posts_json_with_headers_and_classifies_errors() -> None:
    seen: list[httpx.Request] = []
    statuses = iter([204, 503, 404])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(statuses), text="nope")

    cfg = WebhookChannel(id="hook", type="webhook", url="https://hooks.example.kz/k", headers={"X-Key": "abc"})
    sender = WebhookSender(cfg, httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    await sender.send(PAYLOAD)
    assert json.loads(seen[0].content) == PAYLOAD
    assert seen[0].headers["x-key"] == "abc"
    with pytest.raises(DeliveryFailed) as err:
        await sender.send(PAYLOAD)
    assert err.value.retry is True
    with pytest.raises(DeliveryFailed) as err:
        await sender.send(PAYLOAD)
    assert (str(err.value), err.value.retry) == ("webhook https://hooks.example.kz/k answered 404: nope", False)


def test_subject_and_text() -> None:
    assert subject(PAYLOAD) == "[CRITICAL] x1c-02: Nozzle at 262 degC above target"
    assert text({**PAYLOAD, "alert": {**PAYLOAD["alert"], "count": 3}}).splitlines() == [
        "Сопло 262 degC выше заданной", "Nozzle at 262 degC above target", "",
        "raised · critical · x1c-02 · printfarm · 2026-11-18T07:00:00.000Z", "повторений / occurrences: 3",
        "site krg · alert 7 · rule printer-thermal-runaway"]

