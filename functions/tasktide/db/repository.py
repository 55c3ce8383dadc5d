"""The task repository: one interface over SQLite and Postgres for tasks, tags, reminders and the outbox.

Every method runs inside the caller's transaction (a `Session` already begun), so a change, its
materialised reminders and its outbox events commit or roll back together.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tasktide.db.models import OutboxRow, ReminderRow, TaskRow, TaskTagRow
from tasktide.domain.errors import Conflict
from tasktide.domain.reminders import reminder_times
from tasktide.domain.tasks import PRIORITY_RANK, Priority, RecurrenceBasis, Status, Task
from tasktide.events import Envelope, topics_for

SORTS = ("due_at", "priority", "title", "created_at", "updated_at")


@dataclass(frozen=True)
class TaskQuery:
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
    id: uuid.UUID
    task_id: uuid.UUID
    user_id: str
    offset: str
    remind_at: datetime
    due_at: datetime


def _to_task(row: TaskRow) -> Task:
    return Task(
        id=row.id,
        user_id=row.user_id,
        title=row.title,
        description=row.description,
        priority=Priority(row.priority),
        tags=tuple(row.tags),
        status=Status(row.status),
        due_at=row.due_at,
        timezone=row.timezone,
        recurrence=row.recurrence,
        recurrence_basis=RecurrenceBasis(row.recurrence_basis),
        reminders=tuple(row.reminders),
        series_id=row.series_id,
        occurrence=row.occurrence,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )


def _columns(task: Task) -> dict[str, object]:
    return {
        "user_id": task.user_id,
        "title": task.title,
        "description": task.description,
        "priority": str(task.priority),
        "priority_rank": PRIORITY_RANK[task.priority],
        "tags": list(task.tags),
        "status": str(task.status),
        "due_at": task.due_at,
        "timezone": task.timezone,
        "recurrence": task.recurrence,
        "recurrence_basis": str(task.recurrence_basis),
        "reminders": list(task.reminders),
        "series_id": task.series_id,
        "occurrence": task.occurrence,
        "version": task.version,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "completed_at": task.completed_at,
    }


class TaskRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- tasks -----------------------------------------------------------------------------------
    def add(self, task: Task) -> None:
        self.session.add(TaskRow(id=task.id, **_columns(task)))
        self.session.flush()
        self._sync_tags(task, new=True)
        self._sync_reminders(task, new=True)

    def add_occurrence(self, task: Task) -> bool:
        """Insert the next occurrence; False when `(series_id, occurrence)` already exists."""
        try:
            with self.session.begin_nested():
                self.add(task)
        except IntegrityError:
            return False
        return True

    def get(self, user_id: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        stmt = select(TaskRow).where(TaskRow.id == task_id, TaskRow.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self.session.scalars(stmt).one_or_none()
        return None if row is None else _to_task(row)

    def save(self, task: Task, *, expected_version: int) -> None:
        """Write a revised task; `Conflict` if someone else changed it since `expected_version`."""
        result = self.session.execute(
            update(TaskRow)
            .where(TaskRow.id == task.id, TaskRow.version == expected_version)
            .values(**_columns(task))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"task {task.id} was changed concurrently; retry with the latest version")
        self._sync_tags(task)
        self._sync_reminders(task)

    def delete(self, task: Task) -> None:
        self.session.execute(delete(ReminderRow).where(ReminderRow.task_id == task.id))
        self.session.execute(delete(TaskTagRow).where(TaskTagRow.task_id == task.id))
        self.session.execute(delete(TaskRow).where(TaskRow.id == task.id))

    def search(self, user_id: str, query: TaskQuery, *, now: datetime) -> list[Task]:
        stmt = _filtered(select(TaskRow).where(TaskRow.user_id == user_id), query, now)
        stmt = _sorted(stmt, query.sort).limit(query.limit).offset(query.offset)
        return [_to_task(row) for row in self.session.scalars(stmt)]

    def series_has_occurrence(self, series_id: uuid.UUID, occurrence: int) -> bool:
        stmt = select(TaskRow.id).where(TaskRow.series_id == series_id, TaskRow.occurrence == occurrence)
        return self.session.scalars(stmt).first() is not None

    # -- outbox ----------------------------------------------------------------------------------
    def add_event(self, event: Envelope) -> None:
        for topic in topics_for(event.type):
            self.session.add(
                OutboxRow(
                    event_id=event.id,
                    topic=topic,
                    key=event.subject,
                    type=event.type,
                    event=event.to_json(),
                    created_at=event.time,
                )
            )

    # -- reminders -------------------------------------------------------------------------------
    def claim_due_reminders(self, now: datetime, limit: int = 500) -> list[ClaimedReminder]:
        """Atomically mark due reminders fired and return them; concurrent scanners never share one."""
        due = select(ReminderRow.id).where(ReminderRow.fired_at.is_(None), ReminderRow.remind_at <= now)
        due = due.order_by(ReminderRow.remind_at).limit(limit)
        if self.session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(ReminderRow)
            .where(ReminderRow.id.in_(due.scalar_subquery()), ReminderRow.fired_at.is_(None))
            .values(fired_at=now)
            .returning(
                ReminderRow.id,
                ReminderRow.task_id,
                ReminderRow.user_id,
                ReminderRow.offset,
                ReminderRow.remind_at,
                ReminderRow.due_at,
            )
            .execution_options(synchronize_session=False)
        )
        return [ClaimedReminder(*row) for row in self.session.execute(stmt).all()]

    def pending_reminders(self, task_id: uuid.UUID) -> list[tuple[str, datetime]]:
        stmt = select(ReminderRow.offset, ReminderRow.remind_at).where(
            ReminderRow.task_id == task_id, ReminderRow.fired_at.is_(None)
        )
        return [(o, r) for o, r in self.session.execute(stmt.order_by(ReminderRow.remind_at)).all()]

    # -- internals -------------------------------------------------------------------------------
    def _sync_tags(self, task: Task, *, new: bool = False) -> None:
        if not new:
            self.session.execute(delete(TaskTagRow).where(TaskTagRow.task_id == task.id))
        for tag in task.tags:
            self.session.add(TaskTagRow(task_id=task.id, tag=tag))
        self.session.flush()

    def _sync_reminders(self, task: Task, *, new: bool = False) -> None:
        """Materialise one row per (task, offset). A row whose time did not move is kept (fired or not);
        one whose time moved is replaced by a new row with a new id, so its next firing is a new event."""
        rows: dict[str, ReminderRow] = {}
        if not new:
            stmt = select(ReminderRow).where(ReminderRow.task_id == task.id)
            rows = {r.offset: r for r in self.session.scalars(stmt)}
        wanted: dict[str, datetime] = {}
        if task.status == Status.PENDING and task.due_at is not None:
            wanted = dict(reminder_times(task.due_at, task.reminders))
        kept = {o for o, r in rows.items() if wanted.get(o) == r.remind_at and r.due_at == task.due_at}
        for offset, row in rows.items():
            if offset not in kept:
                self.session.delete(row)
        self.session.flush()  # deletes before the inserts that reuse their (task_id, offset)
        for offset, remind_at in wanted.items():
            if offset not in kept:
                assert task.due_at is not None
                self.session.add(
                    ReminderRow(
                        id=uuid.uuid4(),
                        task_id=task.id,
                        user_id=task.user_id,
                        offset=offset,
                        remind_at=remind_at,
                        due_at=task.due_at,
                    )
                )
        self.session.flush()


def _filtered(stmt: Select[Any], query: TaskQuery, now: datetime) -> Select[Any]:
    if query.status != "all":
        stmt = stmt.where(TaskRow.status == query.status)
    if query.priorities:
        stmt = stmt.where(TaskRow.priority.in_(query.priorities))
    for tag in query.tags:
        stmt = stmt.where(exists().where(TaskTagRow.task_id == TaskRow.id, TaskTagRow.tag == tag))
    if query.q:
        pattern = "%" + query.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                func.lower(TaskRow.title).like(pattern, escape="\\"),
                func.lower(TaskRow.description).like(pattern, escape="\\"),
            )
        )
    if query.due_from is not None:
        stmt = stmt.where(TaskRow.due_at >= query.due_from)
    if query.due_to is not None:
        stmt = stmt.where(TaskRow.due_at <= query.due_to)
    if query.overdue:
        stmt = stmt.where(and_(TaskRow.status == str(Status.PENDING), TaskRow.due_at < now))
    return stmt


def _sorted(stmt: Select[Any], sort: str) -> Select[Any]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    column = {
        "due_at": TaskRow.due_at,
        "priority": TaskRow.priority_rank,
        "title": TaskRow.title,
        "created_at": TaskRow.created_at,
        "updated_at": TaskRow.updated_at,
    }[key]
    # Priorities order high > medium > low > none (rank 0 is high): "-priority" (descending) puts high
    # first, "priority" low first. Tasks without a due date always come last.
    if key == "priority":
        descending = not descending
    order = column.desc() if descending else column.asc()
    clauses = [TaskRow.due_at.is_(None).asc()] if key == "due_at" else []
    return stmt.order_by(*clauses, order, TaskRow.created_at.asc(), TaskRow.id.asc())


def as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


__all__: Sequence[str] = ("SORTS", "ClaimedReminder", "TaskQuery", "TaskRepository", "as_uuid")
