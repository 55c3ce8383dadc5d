"""SQLAlchemy 2.0 models: tasks, their tags and reminders, the outbox, audit log and notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tasktide.db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("series_id", "occurrence"),
        Index("ix_tasks_user_status_due", "user_id", "status", "due_at"),
        Index("ix_tasks_user_due", "user_id", "due_at"),
        Index("ix_tasks_user_created", "user_id", "created_at"),
        Index("ix_tasks_user_updated", "user_id", "updated_at"),
        Index("ix_tasks_user_priority", "user_id", "priority_rank"),
        Index("ix_tasks_user_title", "user_id", "title"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(8))
    priority_rank: Mapped[int] = mapped_column(SmallInteger)
    tags: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))
    recurrence: Mapped[str | None] = mapped_column(Text)
    recurrence_basis: Mapped[str] = mapped_column(String(16))
    reminders: Mapped[list[str]] = mapped_column(JSON)
    series_id: Mapped[uuid.UUID] = mapped_column()
    occurrence: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The series (RFC 5545 DTSTART as local wall time "YYYY-MM-DDTHH:MM:SS" + IANA zone), the rule
    # instance this occurrence stands for, and the series' EXDATE / RDATE instants (RFC 3339 UTC strings).
    series_start: Mapped[str | None] = mapped_column(String(19))
    series_timezone: Mapped[str | None] = mapped_column(String(64))
    original_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exdates: Mapped[list[str] | None] = mapped_column(JSON)
    rdates: Mapped[list[str] | None] = mapped_column(JSON)


class TaskTagRow(Base):
    """One tag of one task, with the task's owner: a tag filter reads only its user's tags (by
    `ix_task_tags_user_tag`), however many other users share the tag."""

    __tablename__ = "task_tags"
    __table_args__ = (Index("ix_task_tags_user_tag", "user_id", "tag", "task_id"),)

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(128))  # NULL only from a release before 0004


def _partial_index(name: str, column: str, *, where: str) -> Index:
    """An index over the rows ``where`` holds, on Postgres and SQLite alike."""
    return Index(name, column, postgresql_where=text(where), sqlite_where=text(where))


class ReminderRow(Base):
    """One materialised reminder per (task, offset); `fired_at` set once when claimed by a scanner."""

    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint("task_id", "offset"),
        _partial_index("ix_reminders_due_unfired", "remind_at", where="fired_at IS NULL"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(128))
    offset: Mapped[str] = mapped_column(String(32))
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """Events written in the same transaction as the change; the relay publishes and marks them sent."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "topic"),
        _partial_index("ix_outbox_unsent", "id", where="sent_at IS NULL"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(128))
    key: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(128))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """Append-only: one row per CloudEvent id; duplicates are ignored."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_task_time", "user_id", "task_id", "time", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(128))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(128))
    changed: Mapped[list[str]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationSettingsRow(Base):
    __tablename__ = "notification_settings"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationRow(Base):
    """In-app notifications, one per reminder event."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(128))
    task_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
