"""Audit: record every task event once in the append-only log, and read a task's history.

The event's claims are checked against what the database knows, so a forged event cannot write another
user's history: the actor must be the task's owner (or a tasktide function, `SYSTEM_ACTORS`), and a
`task.deleted` event is recorded only if the task is really gone (`Untrusted` otherwise). Duplicates (same
CloudEvent id) are recorded once; reordered events sort by their CloudEvent time when read.
"""

from __future__ import annotations

import uuid

from tasktide.app.ports import AuditEntry, AuditUnitOfWorkFactory, TaskLookup
from tasktide.app.tasks import RECURRING
from tasktide.domain.errors import NotFound
from tasktide.messaging import events

SYSTEM_ACTORS = frozenset({RECURRING})


class Untrusted(Exception):
    """The event's claims contradict the database; redelivering it would not change the answer."""


def untrusted(tasks: TaskLookup, entry: AuditEntry) -> str | None:
    """Why `entry`'s claims contradict the database, or None."""
    if entry.actor is not None and entry.actor != entry.user_id and entry.actor not in SYSTEM_ACTORS:
        return f"actor {entry.actor[:64]!r} is neither the task's owner nor a tasktide function"
    if entry.type == events.TASK_DELETED:
        try:
            task_id = uuid.UUID(entry.task_id)
        except ValueError:
            return None
        if tasks.exists(entry.user_id, task_id):
            return "a task.deleted event for a task that still exists"
    return None


class Audit:
    def __init__(self, uow: AuditUnitOfWorkFactory) -> None:
        self.uow = uow

    def record(self, entry: AuditEntry) -> bool:
        """Append `entry`; False for a duplicate. Raises `Untrusted` (nothing written)."""
        with self.uow() as uow:
            reason = untrusted(uow.tasks, entry)
            if reason is not None:
                raise Untrusted(reason)
            return uow.audit.record(entry)

    def history(self, user_id: str, task_id: uuid.UUID) -> list[AuditEntry]:
        """The task's trail, oldest first; `NotFound` when there is none and no such task of the user's."""
        with self.uow(read_only=True) as uow:
            entries = uow.audit.history(user_id, task_id)
            if not entries and not uow.tasks.exists(user_id, task_id):
                raise NotFound(f"Task {task_id} does not exist for user {user_id}.")
        return entries
