"""recurring: completing one occurrence of a recurring task creates the next.

Consumes: `com.tasktide.task.completed`. Emits (outbox): `com.tasktide.task.created` for the next
occurrence. The next due time comes from the series (the rule over its anchored start, COUNT/UNTIL counted
from that start, EXDATE/RDATE applied: `tasktide.domain.tasks.next_occurrence_task`), never from the
completed occurrence's own due time. Exactly one next occurrence per completed occurrence: its id is
derived from `(series_id, occurrence)` and the table is unique on that pair, so redelivery and races (also
with a skip of the same occurrence) insert nothing (`tasktide.app.tasks.Tasks.next_occurrence`).
"""

from __future__ import annotations

from typing import Any

import functions_framework

from tasktide.app.tasks import Occurrence, Tasks
from tasktide.domain.tasks import SERIES_NAMESPACE, occurrence_id
from tasktide.functions import _kit
from tasktide.messaging import events
from tasktide.observability import metrics

__all__ = ["SERIES_NAMESPACE", "occurrence_id", "recurring"]


@functions_framework.cloud_event
def recurring(event: Any) -> None:
    with _kit.consuming("recurring", event, events.TaskEventData, events.TASK_COMPLETED) as data:
        tasks = Tasks(_kit.services().unit_of_work)
        done = tasks.next_occurrence(
            data.task.user_id,
            data.task.id,
            recurring=bool(data.task.recurrence),
            trace=_kit.attr(event, "traceparent"),
        )
        _kit.crash_after_commit()
        if done is Occurrence.CREATED:
            metrics.OCCURRENCES_CREATED.inc()
        _kit.outcome("recurring", event, "duplicate_ignored" if done is Occurrence.DUPLICATE else "ok")
