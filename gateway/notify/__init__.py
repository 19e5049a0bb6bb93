"""Notifications of alerts: webhook, e-mail, Telegram, MQTT, with an outbox and retries."""
