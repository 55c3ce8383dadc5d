"""The audit use case on real SQLite and Postgres: trusted events recorded once, history by event time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tasktide.app.audit import Audit, Untrusted
from tasktide.app.ports import AuditEntry
from tasktide.app.tasks import Tasks
from tasktide.domain.errors import NotFound
from tasktide.messaging import events
from tasktide.services import Services

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def entry(
    task_id: uuid.UUID, kind: str, *, actor: str = "u1", at: datetime = NOW, eid: str = ""
) -> AuditEntry:
    return AuditEntry(eid or str(uuid.uuid4()), str(task_id), "u1", kind, at, actor, ("title",), NOW)


def test_audit_duplicate_event_recorded_once(services: Services) -> None:
    audit = Audit(services.unit_of_work)
    task = Tasks(services.unit_of_work).create("u1", {"title": "t"})
    first = entry(task.id, events.TASK_UPDATED, eid="e1")
    assert audit.record(first) is True
    assert audit.record(first) is False
    assert [e.event_id for e in audit.history("u1", task.id)] == ["e1"]


def test_audit_reordered_events_read_in_event_time_order(services: Services) -> None:
    audit = Audit(services.unit_of_work)
    task_id = uuid.uuid4()
    audit.record(entry(task_id, events.TASK_COMPLETED, at=NOW + timedelta(minutes=2), eid="late"))
    audit.record(entry(task_id, events.TASK_CREATED, at=NOW, eid="early"))
    assert [e.event_id for e in audit.history("u1", task_id)] == ["early", "late"]


def test_audit_untrusted_actor_or_live_delete_raises_and_writes_nothing(services: Services) -> None:
    audit = Audit(services.unit_of_work)
    task = Tasks(services.unit_of_work).create("u1", {"title": "t"})
    with pytest.raises(Untrusted, match="neither the task's owner"):
        audit.record(entry(task.id, events.TASK_UPDATED, actor="support-admin"))
    with pytest.raises(Untrusted, match="still exists"):
        audit.record(entry(task.id, events.TASK_DELETED))
    assert audit.history("u1", task.id) == []


def test_audit_history_of_unknown_task_raises_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        Audit(services.unit_of_work).history("u1", uuid.uuid4())
