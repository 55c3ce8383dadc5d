"""recurring: completing one occurrence of a recurring task creates the next.

Consumes: `com.tasktide.task.completed`. Emits (outbox): `com.tasktide.task.created` for the next
occurrence. The next due time comes from the series (the rule over its anchored start, COUNT/UNTIL counted
from that start, EXDATE/RDATE applied: `tasktide.domain.tasks.next_occurrence_task`), never from the
completed occurrence's own due time. Exactly one next occurrence per completed occurrence: its id is
derived from `(series_id, occurrence)` and the table is unique on that pair, so redelivery and races (also
with a skip of the same occurrence) insert nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import functions_framework

from tasktide.db.repository import TaskRepository
from tasktide.domain.tasks import SERIES_NAMESPACE, Status, next_occurrence_task, occurrence_id
from tasktide.functions import _kit
from tasktide.messaging import events
from tasktide.observability import metrics

__all__ = ["SERIES_NAMESPACE", "occurrence_id", "recurring"]


@functions_framework.cloud_event
def recurring(event: Any) -> None:
    with _kit.consuming("recurring", event, events.TaskEventData, events.TASK_COMPLETED) as data:
        if not data.task.recurrence:
            _kit.outcome("recurring", event, "ok")
            return
        services = _kit.services()
        with services.sessions() as session, session.begin():
            repo = TaskRepository(session)
            current = repo.get(data.task.user_id, data.task.id)
            # Deleted (series ended) or reopened since: nothing to create for this delivery.
            if current is None or current.status != Status.COMPLETED or current.completed_at is None:
                _kit.outcome("recurring", event, "ok")
                return
            new_id = occurrence_id(current.series_id, current.occurrence + 1)
            nxt = next_occurrence_task(
                current, completed_at=current.completed_at, new_id=new_id, now=datetime.now(UTC)
            )
            if nxt is None:
                _kit.outcome("recurring", event, "ok")
                return
            created = repo.add_occurrence(nxt)
            if created:
                repo.add_event(
                    events.task_envelope(
                        events.TASK_CREATED,
                        nxt,
                        function="recurring",
                        actor="recurring",
                        traceparent=_kit.attr(event, "traceparent"),
                    )
                )
        _kit.crash_after_commit()
        services.committed()
        if created:
            metrics.OCCURRENCES_CREATED.inc()
        _kit.outcome("recurring", event, "ok" if created else "duplicate_ignored")
