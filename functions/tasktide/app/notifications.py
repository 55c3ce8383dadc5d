"""Notifications: a user's channel settings, the in-app list, and what the notifier records around the
deliveries of one due reminder (the in-app row first, the `notification.sent` event last).

What is sent comes from the database (the stored task's title), never from the event's data, so a forged
event cannot put words in the user's inbox. Every write is idempotent on the reminder event's id.
Emits (outbox): `com.tasktide.notification.sent`.
"""

from __future__ import annotations

import uuid

from tasktide.app.ports import ChannelSettings, Clock, Notification, UnitOfWorkFactory
from tasktide.app.tasks import utcnow
from tasktide.domain.errors import NotFound
from tasktide.domain.tasks import Status
from tasktide.messaging import events

SENT_NAMESPACE = uuid.UUID("0c5d3c52-4f0e-4f59-9a57-5c2d6a9b8e13")
NOTIFIER = "notifier"


class Notifications:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock = utcnow) -> None:
        self.uow, self.clock = uow, clock

    # -- the API ---------------------------------------------------------------------------------
    def channels(self, user_id: str) -> ChannelSettings:
        with self.uow(read_only=True) as uow:
            return uow.notifications.channels(user_id)

    def set_channels(self, user_id: str, channels: ChannelSettings) -> None:
        with self.uow() as uow:
            uow.notifications.set_channels(user_id, channels, now=self.clock())

    def recent(self, user_id: str, *, unread: bool = False, limit: int = 50) -> list[Notification]:
        with self.uow(read_only=True) as uow:
            return uow.notifications.recent(user_id, unread=unread, limit=limit)

    def mark(self, user_id: str, notification_id: uuid.UUID, *, read: bool = True) -> Notification:
        with self.uow() as uow:
            found = uow.notifications.mark_read(user_id, notification_id, read, now=self.clock())
        if found is None:
            raise NotFound(f"Notification {notification_id} does not exist for user {user_id}.")
        return found

    # -- the notifier ----------------------------------------------------------------------------
    def still_due(self, data: events.ReminderDueData) -> events.ReminderDueData | None:
        """The reminder as the database tells it (the stored task's title), if the task is still pending
        with the same due date; None (stay silent) if it was completed, deleted or moved."""
        with self.uow(read_only=True) as uow:
            task = uow.tasks.get(data.user_id, data.task_id)
        if task is None or task.status != Status.PENDING or task.due_at != data.due_at:
            return None
        return data.model_copy(update={"title": task.title})

    def notify_in_app(self, event_id: str, data: events.ReminderDueData) -> tuple[bool, ChannelSettings]:
        """Write the in-app notification of reminder event `event_id` (False: written before) and read the
        user's other channels, in one transaction."""
        notification = Notification(
            id=uuid.uuid5(SENT_NAMESPACE, f"in_app:{event_id}"),
            event_id=event_id,
            user_id=data.user_id,
            task_id=str(data.task_id),
            title=f"Reminder: {data.title}",
            body=f"Due at {data.due_at.isoformat()}",
            created_at=self.clock(),
        )
        with self.uow() as uow:
            channels = uow.notifications.channels(data.user_id)
            added = uow.notifications.add(notification)
        return added, channels

    def announce_sent(self, event_id: str, data: events.ReminderDueData, channels: list[str]) -> bool:
        """Write `notification.sent` for reminder event `event_id`; False when it was written before."""
        sent = events.NotificationSentData(
            reminder_event_id=event_id, task_id=data.task_id, user_id=data.user_id, channels=channels
        )
        envelope = events.envelope(
            events.NOTIFICATION_SENT,
            NOTIFIER,
            str(data.task_id),
            sent,
            event_id=str(uuid.uuid5(SENT_NAMESPACE, f"sent:{event_id}")),
        )
        with self.uow() as uow:
            return uow.tasks.add_event_once(envelope)
