"""The notifications repository: a user's channel settings and in-app notifications."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tasktide.app.ports import ChannelSettings, Notification
from tasktide.db.models import NotificationRow, NotificationSettingsRow

NOTIFICATIONS: Table = NotificationRow.__table__  # type: ignore[assignment]
SETTINGS: Table = NotificationSettingsRow.__table__  # type: ignore[assignment]


def _notification(row: Row[Any]) -> Notification:
    return Notification(
        id=row.id,
        event_id=row.event_id,
        user_id=row.user_id,
        task_id=row.task_id,
        title=row.title,
        body=row.body,
        created_at=row.created_at,
        read_at=row.read_at,
    )


class NotificationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _insert(self) -> Any:
        return postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite

    def channels(self, user_id: str) -> ChannelSettings:
        stmt = select(SETTINGS.c.webhook_url, SETTINGS.c.email).where(SETTINGS.c.user_id == user_id)
        row = self.session.execute(stmt).one_or_none()
        return ChannelSettings() if row is None else ChannelSettings(row.webhook_url, row.email)

    def set_channels(self, user_id: str, channels: ChannelSettings, *, now: datetime) -> None:
        """Insert or replace the user's settings (one statement)."""
        values = {"webhook_url": channels.webhook_url, "email": channels.email, "updated_at": now}
        stmt = self._insert().insert(SETTINGS).values(user_id=user_id, **values)
        self.session.execute(stmt.on_conflict_do_update(index_elements=[SETTINGS.c.user_id], set_=values))

    def add(self, notification: Notification) -> bool:
        """Insert one notification; False when one with its id or event id exists already."""
        values = {
            "id": notification.id,
            "event_id": notification.event_id,
            "user_id": notification.user_id,
            "task_id": notification.task_id,
            "title": notification.title,
            "body": notification.body,
            "created_at": notification.created_at,
            "read_at": notification.read_at,
        }
        stmt = self._insert().insert(NOTIFICATIONS).values(values).on_conflict_do_nothing()
        return self.session.execute(stmt.returning(NOTIFICATIONS.c.id)).first() is not None

    def recent(self, user_id: str, *, unread: bool, limit: int) -> list[Notification]:
        stmt = select(NOTIFICATIONS).where(NOTIFICATIONS.c.user_id == user_id)
        if unread:
            stmt = stmt.where(NOTIFICATIONS.c.read_at.is_(None))
        stmt = stmt.order_by(NOTIFICATIONS.c.created_at.desc(), NOTIFICATIONS.c.id.desc()).limit(limit)
        return [_notification(row) for row in self.session.execute(stmt)]

    def mark_read(
        self, user_id: str, notification_id: uuid.UUID, read: bool, *, now: datetime
    ) -> Notification | None:
        """Mark read (keeping the first read time) or unread; None if the user has no such notification."""
        stmt = select(NOTIFICATIONS).where(
            NOTIFICATIONS.c.id == notification_id, NOTIFICATIONS.c.user_id == user_id
        )
        row = self.session.execute(stmt.with_for_update()).one_or_none()
        if row is None:
            return None
        read_at = (row.read_at or now) if read else None
        if read_at != row.read_at:
            self.session.execute(
                update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == notification_id).values(read_at=read_at)
            )
        return dataclasses.replace(_notification(row), read_at=read_at)
