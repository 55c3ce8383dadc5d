"""audit: keeps every task event in an append-only log, served as each task's history.

Consumes: `com.tasktide.task.*`. Emits: nothing. Duplicates (same CloudEvent id) are ignored by the
unique constraint; reordered events sort by their CloudEvent `time` when read.

The event's claims are checked against what the database knows, so a forged event cannot write another
user's history: the actor must be the task's owner (or the `recurring` function, which creates the next
occurrence), and a `task.deleted` event is recorded only if the task is really gone. Events that fail are
answered 2xx, logged and counted `untrusted_ignored` (redelivering would not change the answer).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import functions_framework
from sqlalchemy.exc import IntegrityError

from tasktide.db.models import AuditRow
from tasktide.db.repository import TaskRepository
from tasktide.functions import _kit
from tasktide.messaging import events

SYSTEM_ACTORS = frozenset({"recurring"})


def event_time(event: Any) -> datetime:
    raw = _kit.attr(event, "time")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else datetime.now(UTC)
    except ValueError:
        parsed = datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def untrusted(repo: TaskRepository, row: AuditRow) -> str | None:
    """Why the event's claims contradict the database (see the module docstring), or None."""
    if row.actor is not None and row.actor != row.user_id and row.actor not in SYSTEM_ACTORS:
        return f"actor {row.actor[:64]!r} is neither the task's owner nor a tasktide function"
    if row.type == events.TASK_DELETED and repo.get(row.user_id, uuid.UUID(row.task_id)) is not None:
        return "a task.deleted event for a task that still exists"
    return None


@functions_framework.cloud_event
def audit(event: Any) -> None:
    with _kit.consuming("audit", event, events.TaskEventData, *events.TASK_TYPES) as data:
        services = _kit.services()
        row = AuditRow(
            event_id=_kit.attr(event, "id") or "",
            task_id=str(data.task.id),
            user_id=data.task.user_id,
            type=_kit.attr(event, "type") or "",
            time=event_time(event),
            actor=data.actor,
            changed=list(data.changed),
            recorded_at=datetime.now(UTC),
        )
        try:
            with services.sessions() as session, session.begin():
                reason = untrusted(TaskRepository(session), row)
                if reason is None:
                    session.add(row)
        except IntegrityError:
            _kit.outcome("audit", event, "duplicate_ignored")
            return
        if reason is not None:
            _kit.log.warning("not recording an event the database contradicts: %s", reason)
            _kit.outcome("audit", event, "untrusted_ignored")
            return
        _kit.outcome("audit", event, "ok")
