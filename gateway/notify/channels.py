"""Delivery of one notification per channel: webhook (JSON), e-mail (SMTP), Telegram bot, MQTT topic.

Each sender raises `DeliveryFailed` with what went wrong and whether trying again can help; library errors are
translated here, where they enter our code.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from drivers.mqtt.client import connect_args, new_client
from drivers.mqtt.config import MqttBroker
from gateway.config.operations import Channel, EmailChannel, MqttChannel, TelegramChannel, WebhookChannel
from gateway.errors import KartechError

CLIENT_ID_PREFIX = "kartech-notify-"  # every MQTT notification connects with this prefix and a random tail


class DeliveryFailed(KartechError):
    def __init__(self, message: str, *, retry: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after_s = retry_after_s


def subject(payload: dict[str, Any]) -> str:
    a = payload["alert"]
    tag = {"raised": "", "repeated": " (repeated)", "returned": "", "cleared": " — cleared", "test": ""}.get(
        payload.get("transition", ""), "")
    return f"[{a['severity'].upper()}] {a['machine']}: {a['message']['en']}{tag}"


def text(payload: dict[str, Any]) -> str:
    a = payload["alert"]
    lines = [a["message"]["ru"], a["message"]["en"], "",
             f"{payload.get('transition', '')} · {a['severity']} · {a['machine']}"
             + (f" · {a['lab']}" if a.get("lab") else "") + f" · {a.get('last_raised') or a.get('raised') or ''}"]
    if a.get("count", 1) > 1:
        lines.append(f"повторений / occurrences: {a['count']}")
    lines.append(f"site {payload.get('site', '')} · alert {a.get('id')} · rule {a.get('rule')}")
    return "\n".join(lines)


class Sender(Protocol):
    kind: str

    async def send(self, payload: dict[str, Any]) -> None: ...


def _http_error(what: str, r: httpx.Response) -> DeliveryFailed:
    body = r.text[:300]
    permanent = 400 <= r.status_code < 500 and r.status_code not in (408, 429)
    retry_after = r.headers.get("retry-after")
    return DeliveryFailed(f"{what} answered {r.status_code}: {body}", retry=not permanent,
                          retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None)


class WebhookSender:
    kind = "webhook"

    def __init__(self, cfg: WebhookChannel, client: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.client = client

    async def send(self, payload: dict[str, Any]) -> None:
        try:
            r = await self.client.post(self.cfg.url, json=payload, headers=self.cfg.headers,
                                       timeout=self.cfg.timeout_s)
        except httpx.HTTPError as err:
            raise DeliveryFailed(f"webhook {self.cfg.url} not reachable: {err or type(err).__name__}") from err
        if r.status_code >= 300:
            raise _http_error(f"webhook {self.cfg.url}", r)


class TelegramSender:
    kind = "telegram"

    def __init__(self, cfg: TelegramChannel, client: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.client = client

    async def send(self, payload: dict[str, Any]) -> None:
        url = f"{self.cfg.api_url.rstrip('/')}/bot{self.cfg.token}/sendMessage"
        body = {"chat_id": self.cfg.chat_id, "text": f"{subject(payload)}\n\n{text(payload)}"[:4096],
                "disable_web_page_preview": True}
        try:
            r = await self.client.post(url, json=body, timeout=self.cfg.timeout_s)
        except httpx.HTTPError as err:
            # the URL holds the bot token: never put it in a message
            raise DeliveryFailed(f"Telegram Bot API at {self.cfg.api_url} not reachable: "
                                 f"{type(err).__name__}") from None
        if r.status_code == 429:
            after = (r.json().get("parameters") or {}).get("retry_after")
            raise DeliveryFailed("Telegram asks to slow down (429)", retry_after_s=float(after) if after else None)
        if r.status_code >= 300:
            detail = r.json().get("description", r.text[:200]) if r.headers.get("content-type", "").startswith(
                "application/json") else r.text[:200]
            permanent = r.status_code in (400, 401, 403, 404)
            raise DeliveryFailed(f"Telegram answered {r.status_code}: {detail}; check the bot token and chat_id",
                                 retry=not permanent)


class EmailSender:
    kind = "email"

    def __init__(self, cfg: EmailChannel) -> None:
        self.cfg = cfg

    def _send_blocking(self, msg: EmailMessage) -> None:
        c = self.cfg
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if c.security == "tls":
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        with smtp:
            if c.security == "starttls":
                smtp.starttls(context=context)
            if c.username:
                smtp.login(c.username, c.password or "")
            smtp.send_message(msg)

    async def send(self, payload: dict[str, Any]) -> None:
        c = self.cfg
        msg = EmailMessage()
        msg["Subject"] = subject(payload)
        msg["From"] = c.sender
        msg["To"] = ", ".join(c.to)
        msg["Message-ID"] = f"<kartech-{payload['alert'].get('id')}-{uuid.uuid4().hex[:12]}@{c.sender.split('@')[-1]}>"
        msg.set_content(text(payload))
        try:
            await asyncio.to_thread(self._send_blocking, msg)
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryFailed(f"SMTP {c.host}:{c.port} refused the login ({err.smtp_code}); check username "
                                 "and password", retry=False) from err
        except smtplib.SMTPRecipientsRefused as err:
            raise DeliveryFailed(f"SMTP {c.host}:{c.port} refused the recipients {', '.join(err.recipients)}",
                                 retry=False) from err
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryFailed(f"SMTP {c.host}:{c.port} ({c.security}): {err}") from err


class MqttSender:
    kind = "mqtt"

    def __init__(self, cfg: MqttChannel, broker: MqttBroker, site_id: str) -> None:
        self.cfg = cfg
        self.broker = broker
        self.site_id = site_id

    def _publish_blocking(self, topic: str, body: bytes) -> None:
        b = self.broker
        client = new_client(b, f"{CLIENT_ID_PREFIX}{uuid.uuid4().hex[:8]}")
        client.connect(b.host, b.port, **connect_args(b))
        client.loop_start()
        try:
            info = client.publish(topic, body, qos=self.cfg.qos)
            info.wait_for_publish(self.cfg.timeout_s)
            if not info.is_published():
                raise TimeoutError(f"no acknowledgement within {self.cfg.timeout_s:g} s")
        finally:
            client.disconnect()
            client.loop_stop()

    async def send(self, payload: dict[str, Any]) -> None:
        a = payload["alert"]
        topic = self.cfg.topic.replace("{site}", self.site_id).replace("{machine}", a["machine"]).replace(
            "{severity}", a["severity"])
        body = json.dumps(payload, ensure_ascii=False).encode()
        try:
            await asyncio.to_thread(self._publish_blocking, topic, body)
        except (OSError, TimeoutError, RuntimeError, ValueError) as err:
            raise DeliveryFailed(f"MQTT broker {self.broker.id} ({self.broker.host}:{self.broker.port}): {err}") \
                from err


def build_senders(channels: list[Channel], brokers: list[MqttBroker], site_id: str,
                  client: httpx.AsyncClient) -> dict[str, Sender]:
    by_id = {b.id: b for b in brokers}
    out: dict[str, Sender] = {}
    for ch in channels:
        if isinstance(ch, WebhookChannel):
            out[ch.id] = WebhookSender(ch, client)
        elif isinstance(ch, TelegramChannel):
            out[ch.id] = TelegramSender(ch, client)
        elif isinstance(ch, EmailChannel):
            out[ch.id] = EmailSender(ch)
        elif ch.broker in by_id:
            out[ch.id] = MqttSender(ch, by_id[ch.broker], site_id)
    return out
