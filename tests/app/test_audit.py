"""The audit use case on real SQLite and Postgres: trusted events recorded once, history by event time.

One contract, run against both adapters of `AuditUnitOfWork`: SQLAlchemy's (`Services.unit_of_work`)
and the DBAPI driver's alone (`tasktide.db.dbapi`, the audit function container's), on both databases;
and each reads exactly what the other wrote."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tasktide.app.audit import Audit, Untrusted
from tasktide.app.ports import AuditEntry, AuditUnitOfWorkFactory
from tasktide.app.tasks import RECURRING, Tasks
from tasktide.db.dbapi import DbapiDatabase
from tasktide.domain.errors import NotFound
from tasktide.messaging import events
from tasktide.services import Services

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlalchemy", "dbapi"])
def audit_uow(request: pytest.FixtureRequest, services: Services) -> Iterator[AuditUnitOfWorkFactory]:
    if request.param == "sqlalchemy":
        yield services.unit_of_work
        return
    database = DbapiDatabase(services.settings.database_url)
    yield database
    database.dispose()


def entry(
    task_id: uuid.UUID, kind: str, *, actor: str = "u1", at: datetime = NOW, eid: str = ""
) -> AuditEntry:
    return AuditEntry(eid or str(uuid.uuid4()), str(task_id), "u1", kind, at, actor, ("title",), NOW)


def test_audit_duplicate_event_recorded_once(services: Services, audit_uow: AuditUnitOfWorkFactory) -> None:
    audit = Audit(audit_uow)
    task = Tasks(services.unit_of_work).create("u1", {"title": "t"})
    first = entry(task.id, events.TASK_UPDATED, eid="e1")
    assert audit.record(first) is True
    assert audit.record(first) is False
    assert [e.event_id for e in audit.history("u1", task.id)] == ["e1"]


def test_audit_reordered_events_read_in_event_time_order(audit_uow: AuditUnitOfWorkFactory) -> None:
    audit = Audit(audit_uow)
    task_id = uuid.uuid4()
    audit.record(entry(task_id, events.TASK_COMPLETED, at=NOW + timedelta(minutes=2), eid="late"))
    audit.record(entry(task_id, events.TASK_CREATED, at=NOW, eid="early"))
    assert [e.event_id for e in audit.history("u1", task_id)] == ["early", "late"]


def test_audit_untrusted_actor_or_live_delete_raises_and_writes_nothing(
    services: Services, audit_uow: AuditUnitOfWorkFactory
) -> None:
    audit = Audit(audit_uow)
    task = Tasks(services.unit_of_work).create("u1", {"title": "t"})
    with pytest.raises(Untrusted, match="neither the task's owner"):
        audit.record(entry(task.id, events.TASK_UPDATED, actor="support-admin"))
    with pytest.raises(Untrusted, match="still exists"):
        audit.record(entry(task.id, events.TASK_DELETED))
    assert audit.history("u1", task.id) == []


def test_audit_history_of_unknown_task_raises_not_found(audit_uow: AuditUnitOfWorkFactory) -> None:
    with pytest.raises(NotFound):
        Audit(audit_uow).history("u1", uuid.uuid4())


def test_audit_adapters_each_read_what_the_other_wrote(services: Services) -> None:
    database = DbapiDatabase(services.settings.database_url)
    try:
        task = Tasks(services.unit_of_work).create("u1", {"title": "t"})
        by_sqlalchemy = Audit(services.unit_of_work)
        by_dbapi = Audit(database)
        written = [
            entry(task.id, events.TASK_CREATED, at=NOW + timedelta(microseconds=123456), eid="sa"),
            entry(task.id, events.TASK_UPDATED, at=NOW + timedelta(seconds=1), actor=RECURRING, eid="db"),
        ]
        assert by_sqlalchemy.record(written[0]) is True
        assert by_dbapi.record(written[1]) is True
        assert by_dbapi.record(written[0]) is False  # the other adapter's row is the same event id
        assert by_sqlalchemy.history("u1", task.id) == written
        assert by_dbapi.history("u1", task.id) == written
    finally:
        database.dispose()


def test_audit_dbapi_deleted_task_recorded_only_once_gone(services: Services) -> None:
    database = DbapiDatabase(services.settings.database_url)
    try:
        tasks = Tasks(services.unit_of_work)
        task = tasks.create("u1", {"title": "t"})
        with pytest.raises(Untrusted, match="still exists"):
            Audit(database).record(entry(task.id, events.TASK_DELETED, eid="d1"))
        tasks.delete("u1", task.id)
        assert Audit(database).record(entry(task.id, events.TASK_DELETED, eid="d1")) is True
    finally:
        database.dispose()
