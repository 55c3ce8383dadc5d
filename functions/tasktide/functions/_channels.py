"""Notification channel adapters: a Standard Webhooks-signed POST and an SMTP e-mail.

Consumes a `reminder.due` payload and the channel's settings/secrets; emits one HTTP request or one
e-mail, raising on any failure so the caller can answer 5xx and be redelivered.

Webhooks go through `tasktide.edges.egress` (https only, public addresses only, the resolved address
pinned, no
redirects, bounded time and size); a failure raises :class:`WebhookFailed`, whose message names only the
receiver's origin (never its credentials, path or query).
"""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tasktide.edges import egress
from tasktide.messaging.events import ReminderDueData
from tasktide.settings import Settings


class WebhookFailed(RuntimeError):
    """The webhook was refused by the egress policy or not accepted by its receiver."""


def send_webhook(
    url: str,
    secret: str,
    message_id: str,
    payload: dict[str, Any],
    *,
    allow_local: bool = False,
    timeout: float = egress.DEFAULT_TIMEOUT,
    resolver: egress.Resolver | None = None,
) -> None:
    """POST `payload` signed per Standard Webhooks; `message_id` is the `webhook-id` (stable across
    redeliveries, so receivers dedupe)."""
    try:
        target = egress.check_url(url, allow_local=allow_local, resolver=resolver)
    except egress.EgressRefused as exc:
        raise WebhookFailed(f"webhook refused by the egress policy: {exc}") from None
    body = json.dumps(payload, separators=(",", ":"))
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }
    try:
        reply = egress.post(target, body.encode(), headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"webhook to {target.origin} failed: {type(exc).__name__}") from None
    if not 200 <= reply.status < 300:
        raise WebhookFailed(f"webhook to {target.origin} answered {reply.status} (redirects not followed)")


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
