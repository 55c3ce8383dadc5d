"""audit: keeps every task event in an append-only log, served as each task's history.

Consumes: `com.tasktide.task.*`. Emits: nothing. Duplicates (same CloudEvent id) are recorded once;
reordered events sort by their CloudEvent `time` when read.

The event's claims are checked against what the database knows (`tasktide.app.audit`), so a forged event
cannot write another user's history: the actor must be the task's owner (or the `recurring` function, which
creates the next occurrence), and a `task.deleted` event is recorded only if the task is really gone.
Events that fail are answered 2xx, logged and counted `untrusted_ignored` (redelivering would not change
the answer).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import functions_framework

from tasktide.app.audit import Audit, Untrusted
from tasktide.app.ports import AuditEntry
from tasktide.domain.tasks import parse_datetime
from tasktide.functions import _kit
from tasktide.messaging import events


def event_time(event: Any) -> datetime:
    raw = _kit.attr(event, "time")
    try:
        return parse_datetime(raw) if raw else datetime.now(UTC)
    except ValueError:  # the codec already refused a time that is not RFC 3339
        return datetime.now(UTC)


@functions_framework.cloud_event
def audit(event: Any) -> None:
    with _kit.consuming("audit", event, events.TaskEventData, *events.TASK_TYPES) as data:
        entry = AuditEntry(
            event_id=_kit.attr(event, "id") or "",
            task_id=str(data.task.id),
            user_id=data.task.user_id,
            type=_kit.attr(event, "type") or "",
            time=event_time(event),
            actor=data.actor,
            changed=tuple(data.changed),
            recorded_at=datetime.now(UTC),
        )
        try:
            recorded = Audit(_kit.audit_unit_of_work()).record(entry)
        except Untrusted as reason:
            _kit.log.warning("not recording an event the database contradicts: %s", reason)
            _kit.outcome("audit", event, "untrusted_ignored")
            return
        _kit.outcome("audit", event, "ok" if recorded else "duplicate_ignored")
