"""notifier: delivers a due reminder to each of the user's channels, at most once per channel.

Consumes: `com.tasktide.reminder.due`. Emits (outbox): `com.tasktide.notification.sent`.
Channels: in-app (always; a row unique on the event id), a Standard Webhooks-signed POST to the user's
`webhook_url`, and e-mail over SMTP to `email`. A channel that fails raises, so the function answers 5xx
and Knative redelivers; channels already delivered are skipped on redelivery (dedupe on the event id in
the state store), and one that keeps failing ends in the dead-letter topic.
"""

from __future__ import annotations

import json
import smtplib
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import functions_framework
import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from standardwebhooks.webhooks import Webhook

from tasktide import events, fnkit, metrics
from tasktide.db.models import NotificationRow, NotificationSettingsRow
from tasktide.db.repository import TaskRepository
from tasktide.services import Services

SENT_NAMESPACE = uuid.UUID("0c5d3c52-4f0e-4f59-9a57-5c2d6a9b8e13")
DEDUPE_TTL = 7 * 24 * 3600


def send_webhook(services: Services, url: str, event_id: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, separators=(",", ":"))
    now = datetime.now(UTC)
    signature = Webhook(services.webhook_secret).sign(event_id, now, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    response = httpx.post(url, content=body, headers=headers, timeout=10.0)
    response.raise_for_status()


def send_email(services: Services, to: str, reminder: events.ReminderDueData) -> None:
    settings = services.settings
    if not settings.smtp_host:
        raise RuntimeError("no SMTP server configured (TASKTIDE_SMTP_HOST)")
    message = EmailMessage()
    message["From"], message["To"] = settings.smtp_from, to
    message["Subject"] = f"Reminder: {reminder.title}"
    message.set_content(f"'{reminder.title}' is due at {reminder.due_at.isoformat()}.")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_user and services.smtp_password:
            smtp.login(settings.smtp_user, services.smtp_password)
        smtp.send_message(message)


def deliver_once(services: Services, event_id: str, channel: str, send: Any) -> str:
    key = f"notified:{event_id}:{channel}"
    if services.state.get(key) is not None:
        metrics.NOTIFICATIONS.labels(channel, "duplicate").inc()
        return "duplicate"
    try:
        send()
    except Exception:
        metrics.NOTIFICATIONS.labels(channel, "failed").inc()
        raise
    services.state.put_if_absent(key, b"1", ttl_seconds=DEDUPE_TTL)
    metrics.NOTIFICATIONS.labels(channel, "sent").inc()
    return "sent"


@functions_framework.cloud_event
def notifier(event: Any) -> None:
    with fnkit.consuming("notifier", event, events.ReminderDueData, events.REMINDER_DUE) as data:
        if data is None:
            return
        services, event_id = fnkit.services(), fnkit.attr(event, "id") or ""
        with services.sessions() as session, session.begin():
            prefs = session.scalars(
                select(NotificationSettingsRow).where(NotificationSettingsRow.user_id == data.user_id)
            ).one_or_none()
            try:
                with session.begin_nested():
                    session.add(
                        NotificationRow(
                            id=uuid.uuid5(SENT_NAMESPACE, f"in_app:{event_id}"),
                            event_id=event_id,
                            user_id=data.user_id,
                            task_id=str(data.task_id),
                            title=f"Reminder: {data.title}",
                            body=f"Due at {data.due_at.isoformat()}",
                            created_at=datetime.now(UTC),
                        )
                    )
                metrics.NOTIFICATIONS.labels("in_app", "sent").inc()
            except IntegrityError:
                metrics.NOTIFICATIONS.labels("in_app", "duplicate").inc()
        channels = ["in_app"]
        payload = {"type": events.REMINDER_DUE, "data": data.model_dump(mode="json")}
        if prefs is not None and prefs.webhook_url:
            url = prefs.webhook_url
            deliver_once(
                services, event_id, "webhook", lambda: send_webhook(services, url, event_id, payload)
            )
            channels.append("webhook")
        if prefs is not None and prefs.email:
            email = prefs.email
            deliver_once(services, event_id, "email", lambda: send_email(services, email, data))
            channels.append("email")
        sent = events.NotificationSentData(
            reminder_event_id=event_id, task_id=data.task_id, user_id=data.user_id, channels=channels
        )
        envelope = events.envelope(
            events.NOTIFICATION_SENT,
            "notifier",
            str(data.task_id),
            sent,
            event_id=str(uuid.uuid5(SENT_NAMESPACE, f"sent:{event_id}")),
        )
        try:
            with services.sessions() as session, session.begin():
                TaskRepository(session).add_event(envelope)
        except IntegrityError:
            fnkit.outcome("notifier", event, "duplicate_ignored")
            return
        services.committed()
        fnkit.outcome("notifier", event, "ok")
