"""Notification channel adapters: a Standard Webhooks-signed POST and an SMTP e-mail.

Consumes a `reminder.due` payload and the channel's settings/secrets; emits one HTTP request or one
e-mail, raising on any failure so the caller can answer 5xx and be redelivered.
"""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tasktide.events import ReminderDueData
from tasktide.settings import Settings


def send_webhook(url: str, secret: str, message_id: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, separators=(",", ":"))
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }
    httpx.post(url, content=body, headers=headers, timeout=10.0).raise_for_status()


def send_email(settings: Settings, password: str | None, to: str, reminder: ReminderDueData) -> None:
    if not settings.smtp_host:
        raise RuntimeError("no SMTP server configured (TASKTIDE_SMTP_HOST)")
    message = EmailMessage()
    message["From"], message["To"] = settings.smtp_from, to
    message["Subject"] = f"Reminder: {reminder.title}"
    message.set_content(f"'{reminder.title}' is due at {reminder.due_at.isoformat()}.")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_user and password:
            smtp.login(settings.smtp_user, password)
        smtp.send_message(message)
