"""The ports of the application layer: what it needs from persistence and the relay, as Protocols.

`tasktide.db` implements them (`db.unit_of_work.SqlUnitOfWork` and the repositories it opens); the
application layer names only these, so it runs the same over SQLite, Postgres or a test double.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from tasktide.domain.tasks import Task
from tasktide.messaging.events import Envelope

SORTS = ("due_at", "priority", "title", "created_at", "updated_at")


@dataclass(frozen=True)
class TaskQuery:
    """The task list's filters, sort key (`-` prefix: descending) and page."""

    status: str = "all"
    priorities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    q: str | None = None
    due_from: datetime | None = None
    due_to: datetime | None = None
    overdue: bool = False
    sort: str = "created_at"
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class ClaimedReminder:
    """A materialised reminder a scanner has just marked fired."""

    id: uuid.UUID
    task_id: uuid.UUID
    user_id: str
    offset: str
    remind_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One task event in the append-only audit log (one per CloudEvent id)."""

    event_id: str
    task_id: str
    user_id: str
    type: str
    time: datetime
    actor: str | None
    changed: tuple[str, ...]
    recorded_at: datetime


@dataclass(frozen=True)
class ChannelSettings:
    """Where a user's reminders go besides the in-app list."""

    webhook_url: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Notification:
    """One in-app notification (one per reminder event)."""

    id: uuid.UUID
    event_id: str
    user_id: str
    task_id: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None = None


class TaskLookup(Protocol):
    def exists(self, user_id: str, task_id: uuid.UUID) -> bool:
        """Whether the user has this task (one indexed read, nothing loaded)."""


class TaskStore(TaskLookup, Protocol):
    """Tasks with their tags and materialised reminders, and the outbox their events go to."""

    def add(self, task: Task, *events: Envelope) -> None: ...
    def add_occurrence(self, task: Task) -> bool: ...
    def get(self, user_id: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None: ...
    def save(self, task: Task, *, expected_version: int) -> None: ...
    def delete(self, task: Task) -> None: ...
    def search(self, user_id: str, query: TaskQuery, *, now: datetime) -> list[Task]: ...
    def add_event(self, event: Envelope) -> None: ...
    def add_event_once(self, event: Envelope) -> bool: ...
    def claim_due_reminders(self, now: datetime, limit: int = 500) -> list[ClaimedReminder]: ...


class AuditStore(Protocol):
    def record(self, entry: AuditEntry) -> bool:
        """Append `entry`; False when its event id is already recorded (a duplicate delivery)."""

    def history(self, user_id: str, task_id: uuid.UUID) -> list[AuditEntry]:
        """The task's entries by event time, oldest first."""


class NotificationStore(Protocol):
    def channels(self, user_id: str) -> ChannelSettings: ...
    def set_channels(self, user_id: str, channels: ChannelSettings, *, now: datetime) -> None: ...
    def add(self, notification: Notification) -> bool:
        """Insert; False when one for the same event is already there."""

    def recent(self, user_id: str, *, unread: bool, limit: int) -> list[Notification]: ...
    def mark_read(
        self, user_id: str, notification_id: uuid.UUID, read: bool, *, now: datetime
    ) -> Notification | None: ...


class AuditUnitOfWork(Protocol):
    """What recording an audit entry needs: the log, and whether a task exists. `UnitOfWork` is one;
    `tasktide.db.dbapi` is another, on the DBAPI driver alone (a function that starts without SQLAlchemy)."""

    @property
    def tasks(self) -> TaskLookup: ...
    @property
    def audit(self) -> AuditStore: ...

    def __enter__(self) -> AuditUnitOfWork: ...
    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class AuditUnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> AuditUnitOfWork: ...


class UnitOfWork(AuditUnitOfWork, Protocol):
    """One transaction: its stores commit together when the block ends without an error (and the
    relay is kicked after the commit), or roll back."""

    @property
    def tasks(self) -> TaskStore: ...
    @property
    def notifications(self) -> NotificationStore: ...

    def __enter__(self) -> UnitOfWork: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        """A new unit of work; `read_only` ones never commit (single-statement reads, no BEGIN)."""


Clock = Callable[[], datetime]
Precondition = Callable[[Task], None]
"""Checked against the loaded task before a change (e.g. an HTTP If-Match); raises to refuse it."""

__all__: Sequence[str] = (
    "SORTS",
    "AuditEntry",
    "AuditStore",
    "AuditUnitOfWork",
    "AuditUnitOfWorkFactory",
    "ChannelSettings",
    "ClaimedReminder",
    "Clock",
    "Notification",
    "NotificationStore",
    "Precondition",
    "TaskLookup",
    "TaskQuery",
    "TaskStore",
    "UnitOfWork",
    "UnitOfWorkFactory",
)
