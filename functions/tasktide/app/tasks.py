"""The task commands: load, change (pure domain), save the task and its events in one unit of work.

Used by the API routes (actor: the user) and by the `recurring` function (actor: `recurring`). Every
command runs in one transaction: the task rows and the outbox rows of its events commit together, and the
relay is kicked after the commit. Emits `com.tasktide.task.created|updated|completed|reopened|deleted|
skipped` (through the outbox). Raises `NotFound` for a task the user does not have, the precondition's
error (e.g. `PreconditionFailed`), and the domain's `ValidationFailed` / `Conflict`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum

from tasktide.app.ports import Clock, Precondition, TaskQuery, TaskStore, UnitOfWorkFactory
from tasktide.domain.errors import NotFound
from tasktide.domain.tasks import (
    Status,
    Task,
    changed_fields,
    merge_patch,
    new_task,
    next_occurrence_task,
    occurrence_id,
    revise_task,
    set_completed,
    skip_occurrence,
    task_fields,
)
from tasktide.messaging import events

RECURRING = "recurring"  # the actor (and event source) of occurrences the recurring function creates


def utcnow() -> datetime:
    return datetime.now(UTC)


class Occurrence(StrEnum):
    """What `Tasks.next_occurrence` did for one completed occurrence."""

    CREATED = "created"
    DUPLICATE = "duplicate"  # created before (a redelivery, or a skip of the same occurrence)
    NONE = "none"  # one-off, reopened or deleted since, or the series has ended


class Tasks:
    """The task commands over a unit-of-work factory (see `tasktide.app.ports`)."""

    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock = utcnow) -> None:
        self.uow, self.clock = uow, clock

    # -- reads -----------------------------------------------------------------------------------
    def get(self, user_id: str, task_id: uuid.UUID) -> Task:
        with self.uow(read_only=True) as uow:
            return _load(uow.tasks, user_id, task_id)

    def search(self, user_id: str, query: TaskQuery) -> list[Task]:
        with self.uow(read_only=True) as uow:
            return uow.tasks.search(user_id, query, now=self.clock())

    # -- commands --------------------------------------------------------------------------------
    def create(self, user_id: str, fields: Mapping[str, object], *, trace: str | None = None) -> Task:
        task = new_task(user_id, fields, now=self.clock())
        created = events.task_envelope(events.TASK_CREATED, task, actor=user_id, traceparent=trace)
        with self.uow() as uow:
            uow.tasks.add(task, created)  # one statement on Postgres: task, tags, reminders, outbox rows
        return task

    def replace(
        self,
        user_id: str,
        task_id: uuid.UUID,
        fields: Mapping[str, object],
        *,
        check: Precondition | None = None,
        trace: str | None = None,
    ) -> Task:
        """PUT: every editable field from `fields`. Returns the task as it is now."""
        with self.uow() as uow:
            task = _load(uow.tasks, user_id, task_id, for_update=True, check=check)
            revised = revise_task(task, fields, now=self.clock())
            return _record_change(uow.tasks, task, revised, actor=user_id, trace=trace)

    def patch(
        self,
        user_id: str,
        task_id: uuid.UUID,
        patch: Mapping[str, object],
        *,
        re_anchor: bool = False,
        check: Precondition | None = None,
        trace: str | None = None,
    ) -> Task:
        """RFC 7396 merge patch of the editable fields; `re_anchor` restarts a series at the new due time."""
        with self.uow() as uow:
            task = _load(uow.tasks, user_id, task_id, for_update=True, check=check)
            current = task_fields(task)
            if patch.get("recurrence_text") is not None and "recurrence" not in patch:
                current.pop("recurrence")  # the phrase replaces the rule
            revised = revise_task(task, merge_patch(current, patch), now=self.clock(), re_anchor=re_anchor)
            return _record_change(uow.tasks, task, revised, actor=user_id, trace=trace)

    def complete(
        self,
        user_id: str,
        task_id: uuid.UUID,
        completed: bool | None = None,
        *,
        check: Precondition | None = None,
        trace: str | None = None,
    ) -> Task:
        """Complete (`True`), reopen (`False`) or toggle (`None`) a task."""
        with self.uow() as uow:
            task = _load(uow.tasks, user_id, task_id, for_update=True, check=check)
            target = completed if completed is not None else task.status != Status.COMPLETED
            revised = set_completed(task, target, now=self.clock())
            return _record_change(uow.tasks, task, revised, actor=user_id, trace=trace)

    def reopen(
        self, user_id: str, task_id: uuid.UUID, *, check: Precondition | None = None, trace: str | None = None
    ) -> Task:
        return self.complete(user_id, task_id, False, check=check, trace=trace)

    def delete(
        self, user_id: str, task_id: uuid.UUID, *, check: Precondition | None = None, trace: str | None = None
    ) -> Task:
        """Delete a task; returns it as it was."""
        with self.uow() as uow:
            task = _load(uow.tasks, user_id, task_id, for_update=True, check=check)
            uow.tasks.delete(task)
            uow.tasks.add_event(
                events.task_envelope(events.TASK_DELETED, task, actor=user_id, traceparent=trace)
            )
        return task

    def skip(
        self, user_id: str, task_id: uuid.UUID, *, check: Precondition | None = None, trace: str | None = None
    ) -> tuple[Task, Task | None]:
        """Skip one pending occurrence: its instance becomes an EXDATE, it is removed (`task.skipped`) and
        the next one is created (`task.created`) unless it exists already. `(skipped, next or None)`."""
        with self.uow() as uow:
            task = _load(uow.tasks, user_id, task_id, for_update=True, check=check)
            skipped, nxt = skip_occurrence(task, now=self.clock())
            uow.tasks.delete(task)
            uow.tasks.add_event(
                events.task_envelope(
                    events.TASK_SKIPPED, skipped, changed=("exdates",), actor=user_id, traceparent=trace
                )
            )
            if nxt is not None and uow.tasks.add_occurrence(nxt):
                uow.tasks.add_event(
                    events.task_envelope(events.TASK_CREATED, nxt, actor=user_id, traceparent=trace)
                )
        return skipped, nxt

    def next_occurrence(
        self, user_id: str, task_id: uuid.UUID, *, recurring: bool = True, trace: str | None = None
    ) -> Occurrence:
        """Create the next occurrence of a completed one (idempotent: the next occurrence's id comes from
        `(series_id, occurrence)`, so a redelivered or reordered event creates nothing twice). What the
        database holds decides, not the event: a task reopened or deleted since gets no next occurrence.
        `recurring=False` (the event says the task does not repeat) answers without reading."""
        if not recurring:
            return Occurrence.NONE
        with self.uow() as uow:
            current = uow.tasks.get(user_id, task_id)
            if current is None or current.status != Status.COMPLETED or current.completed_at is None:
                return Occurrence.NONE
            new_id = occurrence_id(current.series_id, current.occurrence + 1)
            nxt = next_occurrence_task(current, completed_at=current.completed_at, new_id=new_id,
                                       now=self.clock())  # fmt: skip
            if nxt is None:
                return Occurrence.NONE
            if not uow.tasks.add_occurrence(nxt):
                return Occurrence.DUPLICATE
            uow.tasks.add_event(
                events.task_envelope(
                    events.TASK_CREATED, nxt, function=RECURRING, actor=RECURRING, traceparent=trace
                )
            )
        return Occurrence.CREATED


def _load(
    tasks: TaskStore,
    user_id: str,
    task_id: uuid.UUID,
    *,
    for_update: bool = False,
    check: Precondition | None = None,
) -> Task:
    task = tasks.get(user_id, task_id, for_update=for_update)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist for user {user_id}.")
    if check is not None:
        check(task)
    return task


def _record_change(tasks: TaskStore, old: Task, new: Task, *, actor: str, trace: str | None) -> Task:
    """Save `new` and its event when it differs from `old`; the task as it is now."""
    changed = changed_fields(old, new)
    if not changed:
        return old
    tasks.save(new, expected_version=old.version)
    if "status" in changed:
        kind = events.TASK_COMPLETED if new.status == Status.COMPLETED else events.TASK_REOPENED
    else:
        kind = events.TASK_UPDATED
    tasks.add_event(events.task_envelope(kind, new, changed=changed, actor=actor, traceparent=trace))
    return new
