"""notifier: delivers a due reminder to each of the user's channels, at least once per channel (the
Standard Webhooks `webhook-id` is the event id, stable across redeliveries, so receivers dedupe).

Consumes: `com.tasktide.reminder.due`. Emits (outbox): `com.tasktide.notification.sent`.
Channels: in-app (always; a row unique on the event id), a Standard Webhooks-signed POST to the user's
`webhook_url`, and e-mail over SMTP to `email`. A channel that fails raises, so the function answers 5xx
and Knative redelivers; channels already delivered are skipped on redelivery (dedupe on the event id in
the state store), and one that keeps failing ends in the dead-letter topic. What is sent comes from the
database (the stored task's title), never from the event's data, so a forged event cannot put words in
the user's inbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import functions_framework

from tasktide.app.notifications import SENT_NAMESPACE, Notifications
from tasktide.functions import _kit
from tasktide.functions._channels import send_email, send_webhook
from tasktide.messaging import events
from tasktide.observability import logs, metrics
from tasktide.services import Services

__all__ = ["SENT_NAMESPACE", "deliver_once", "notifier"]
DEDUPE_TTL = 7 * 24 * 3600
CLAIM_TTL = 30  # the lease of a 'sending' claim: longer than one attempt (webhook 10 s + SMTP 10 s)


class ChannelsFailed(_kit.Redeliver):
    """At least one channel failed; the others were delivered. Answered 5xx so Knative redelivers."""


class InFlight(_kit.Redeliver):
    """Another delivery holds the (event, channel) claim: not confirmed sent, so not a duplicate yet."""


def deliver_once(services: Services, event_id: str, channel: str, send: Callable[[], None]) -> str:
    """Claim the (event, channel) first (first write wins), send, then record it as sent.

    At least once: only a channel recorded ``sent`` counts as a duplicate. A claim still ``sending``
    (another delivery in flight, or a process that died mid-send) raises :class:`InFlight`, so the event is
    redelivered; once the claim's lease (``CLAIM_TTL``) expires the redelivery sends again, with the same
    Standard Webhooks ``webhook-id`` (the event id) so the receiver dedupes. A failed send drops the claim
    so the redelivery tries again at once."""
    key = f"notified:{event_id}:{channel}"
    claimed = services.state.put_if_absent(key, b"sending", ttl_seconds=CLAIM_TTL)
    if not claimed:
        item = services.state.get(key)
        if item is not None and item.value != b"sending":
            metrics.NOTIFICATIONS.labels(channel, "duplicate").inc()
            return "duplicate"
        if item is not None or not services.state.put_if_absent(key, b"sending", ttl_seconds=CLAIM_TTL):
            metrics.NOTIFICATIONS.labels(channel, "in_flight").inc()
            raise InFlight(f"{channel} delivery of {event_id} is in flight (lease {CLAIM_TTL} s)")
    try:
        send()
    except Exception:
        metrics.NOTIFICATIONS.labels(channel, "failed").inc()
        services.state.delete(key)
        raise
    item = services.state.get(key)
    services.state.put(key, b"sent", etag=item.etag if item else None, ttl_seconds=DEDUPE_TTL)
    metrics.NOTIFICATIONS.labels(channel, "sent").inc()
    return "sent"


@functions_framework.cloud_event
def notifier(event: Any) -> None:
    with _kit.consuming("notifier", event, events.ReminderDueData, events.REMINDER_DUE) as data:
        services, event_id = _kit.services(), _kit.attr(event, "id") or ""
        notifications = Notifications(services.unit_of_work)
        stored = notifications.still_due(data)
        if stored is None:
            _kit.outcome("notifier", event, "ok")
            return
        data = stored
        added, prefs = notifications.notify_in_app(event_id, data)
        metrics.NOTIFICATIONS.labels("in_app", "sent" if added else "duplicate").inc()
        payload = {"type": events.REMINDER_DUE, "data": data.model_dump(mode="json")}
        sends: dict[str, Callable[[], None]] = {}
        if prefs.webhook_url:
            url = prefs.webhook_url
            sends["webhook"] = lambda: send_webhook(
                url,
                services.webhook_secret,
                event_id,
                payload,
                allow_local=services.settings.webhook_allow_local,
                timeout=services.settings.webhook_timeout,
            )
        if prefs.email:
            email = prefs.email
            sends["email"] = lambda: send_email(services.settings, services.smtp_password, email, data)
        failed = []
        for channel, send in sends.items():  # every channel gets its try, whatever the others do
            try:
                deliver_once(services, event_id, channel, send)
            except Exception as exc:  # the messages of WebhookFailed/SMTP errors name no URL secret
                failed.append(f"{channel} ({logs.redact_text(str(exc))[:300]})")
        if failed:
            raise ChannelsFailed(f"channels failed: {'; '.join(failed)}")
        if not notifications.announce_sent(event_id, data, ["in_app", *sends]):
            _kit.outcome("notifier", event, "duplicate_ignored")
            return
        _kit.outcome("notifier", event, "ok")
