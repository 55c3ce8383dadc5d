"""recurring: completing one occurrence of a recurring task creates the next.

Consumes: `com.tasktide.task.completed`. Emits (outbox): `com.tasktide.task.created` for the next
occurrence. Exactly one next occurrence per completed occurrence: its id is derived from
`(series_id, occurrence)` and the table is unique on that pair, so redelivery and races insert nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import functions_framework

from tasktide import events, fnkit, metrics
from tasktide.db.repository import TaskRepository
from tasktide.domain.tasks import Status, next_occurrence_task

SERIES_NAMESPACE = uuid.UUID("6f1c1c1e-8a39-4c55-9d0a-7b1f6a0c2d11")


def occurrence_id(series_id: uuid.UUID, occurrence: int) -> uuid.UUID:
    return uuid.uuid5(SERIES_NAMESPACE, f"{series_id}:{occurrence}")


@functions_framework.cloud_event
def recurring(event: Any) -> None:
    with fnkit.consuming("recurring", event, events.TaskEventData, events.TASK_COMPLETED) as data:
        if data is None:
            return
        if not data.task.recurrence:
            fnkit.outcome("recurring", event, "ok")
            return
        services = fnkit.services()
        with services.sessions() as session, session.begin():
            repo = TaskRepository(session)
            current = repo.get(data.task.user_id, data.task.id)
            # Deleted (series ended) or reopened since: nothing to create for this delivery.
            if current is None or current.status != Status.COMPLETED or current.completed_at is None:
                fnkit.outcome("recurring", event, "ok")
                return
            new_id = occurrence_id(current.series_id, current.occurrence + 1)
            nxt = next_occurrence_task(
                current, completed_at=current.completed_at, new_id=new_id, now=datetime.now(UTC)
            )
            if nxt is None:
                fnkit.outcome("recurring", event, "ok")
                return
            created = repo.add_occurrence(nxt)
            if created:
                repo.add_event(
                    events.task_envelope(
                        events.TASK_CREATED,
                        nxt,
                        function="recurring",
                        actor="recurring",
                        traceparent=fnkit.attr(event, "traceparent"),
                    )
                )
        fnkit.crash_after_commit()
        services.committed()
        if created:
            metrics.OCCURRENCES_CREATED.inc()
        fnkit.outcome("recurring", event, "ok" if created else "duplicate_ignored")
