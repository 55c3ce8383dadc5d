"""The notifications repository: a user's channel settings and in-app notifications."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, select, update
from sqlalchemy.orm import Session

from tasktide.app.ports import ChannelSettings, Notification
from tasktide.db.engine import dialect_insert
from tasktide.db.models import NotificationRow, NotificationSettingsRow

NOTIFICATIONS: Table = NotificationRow.__table__  # type: ignore[assignment]
SETTINGS: Table = NotificationSettingsRow.__table__  # type: ignore[assignment]


_FIELDS = tuple(f.name for f in dataclasses.fields(Notification))  # the columns, by name


def _notification(row: Row[Any]) -> Notification:
    return Notification(**{name: row._mapping[name] for name in _FIELDS})


class NotificationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def channels(self, user_id: str) -> ChannelSettings:
        stmt = select(SETTINGS.c.webhook_url, SETTINGS.c.email).where(SETTINGS.c.user_id == user_id)
        row = self.session.execute(stmt).one_or_none()
        return ChannelSettings() if row is None else ChannelSettings(row.webhook_url, row.email)

    def set_channels(self, user_id: str, channels: ChannelSettings, *, now: datetime) -> None:
        """Insert or replace the user's settings (one statement)."""
        values = {"webhook_url": channels.webhook_url, "email": channels.email, "updated_at": now}
        stmt = dialect_insert(self.session, SETTINGS).values(user_id=user_id, **values)
        self.session.execute(stmt.on_conflict_do_update(index_elements=[SETTINGS.c.user_id], set_=values))

    def add(self, notification: Notification) -> bool:
        """Insert one notification; False when one with its id or event id exists already."""
        values = dataclasses.asdict(notification)
        stmt = dialect_insert(self.session, NOTIFICATIONS).values(values).on_conflict_do_nothing()
        return self.session.execute(stmt.returning(NOTIFICATIONS.c.id)).first() is not None

    def recent(self, user_id: str, *, unread: bool, limit: int) -> list[Notification]:
        stmt = select(NOTIFICATIONS).where(NOTIFICATIONS.c.user_id == user_id)
        if unread:
            stmt = stmt.where(NOTIFICATIONS.c.read_at.is_(None))
        stmt = stmt.order_by(NOTIFICATIONS.c.created_at.desc(), NOTIFICATIONS.c.id.desc()).limit(limit)
        return [_notification(row) for row in self.session.execute(stmt).all()]

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
