"""audit: keeps every task event in an append-only log, served as each task's history.

Consumes: `com.tasktide.task.*`. Emits: nothing. Duplicates (same CloudEvent id) are ignored by the
unique constraint; reordered events sort by their CloudEvent `time` when read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import functions_framework
from sqlalchemy.exc import IntegrityError

from tasktide import events, fnkit
from tasktide.db.models import AuditRow


def event_time(event: Any) -> datetime:
    raw = fnkit.attr(event, "time")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else datetime.now(UTC)
    except ValueError:
        parsed = datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@functions_framework.cloud_event
def audit(event: Any) -> None:
    with fnkit.consuming("audit", event, events.TaskEventData, *events.TASK_TYPES) as data:
        if data is None:
            return
        services = fnkit.services()
        row = AuditRow(
            event_id=fnkit.attr(event, "id") or "",
            task_id=str(data.task.id),
            user_id=data.task.user_id,
            type=fnkit.attr(event, "type") or "",
            time=event_time(event),
            actor=data.actor,
            changed=list(data.changed),
            recorded_at=datetime.now(UTC),
        )
        try:
            with services.sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            fnkit.outcome("audit", event, "duplicate_ignored")
            return
        fnkit.outcome("audit", event, "ok")
