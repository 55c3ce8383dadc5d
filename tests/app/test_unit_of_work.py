"""The SQL unit of work on real SQLite and Postgres: one transaction, commit or roll back, and the relay
kicked only after a commit that wrote outbox rows."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError

from tasktide.app.ports import AuditEntry, TaskQuery
from tasktide.db.models import OutboxRow, ReminderRow, TaskTagRow
from tasktide.domain.tasks import new_task
from tasktide.messaging import events
from tasktide.services import Services

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def kicks(services: Services) -> list[int]:
    kicked: list[int] = []
    services.after_commit.append(lambda: kicked.append(1))
    return kicked


def count_tasks(services: Services) -> int:
    with services.unit_of_work(read_only=True) as uow:
        return len(uow.tasks.search("u1", TaskQuery(), now=NOW))


def test_unit_of_work_error_rolls_back_and_does_not_kick(services: Services, kicks: list[int]) -> None:
    task = new_task("u1", {"title": "t"}, now=NOW)
    with pytest.raises(RuntimeError), services.unit_of_work() as uow:
        uow.tasks.add(task, events.task_envelope(events.TASK_CREATED, task))
        raise RuntimeError("after the write")
    assert count_tasks(services) == 0 and kicks == []


def test_unit_of_work_commit_with_events_kicks_once(services: Services, kicks: list[int]) -> None:
    task = new_task("u1", {"title": "t"}, now=NOW)
    with services.unit_of_work() as uow:
        uow.tasks.add(task, events.task_envelope(events.TASK_CREATED, task))
        uow.tasks.add_event(events.task_envelope(events.TASK_UPDATED, task))
    assert count_tasks(services) == 1 and kicks == [1]


def test_unit_of_work_commit_without_events_does_not_kick(services: Services, kicks: list[int]) -> None:
    task_id = uuid.uuid4()
    entry = AuditEntry("e1", str(task_id), "u1", events.TASK_CREATED, NOW, "u1", (), NOW)
    with services.unit_of_work() as uow:
        assert uow.audit.record(entry)
    with services.unit_of_work() as uow:
        assert not uow.audit.record(entry)  # duplicate: nothing written
    with services.unit_of_work(read_only=True) as uow:
        assert [e.event_id for e in uow.audit.history("u1", task_id)] == ["e1"]
    assert kicks == []


def test_unit_of_work_read_only_reads_committed_rows_without_kicking(
    services: Services, kicks: list[int]
) -> None:
    task = new_task("u1", {"title": "t"}, now=NOW)
    with services.unit_of_work() as uow:
        uow.tasks.add(task, events.task_envelope(events.TASK_CREATED, task))
    with services.unit_of_work(read_only=True) as uow:
        assert uow.tasks.get("u1", task.id) == task
    assert kicks == [1]


def test_unit_of_work_duplicate_event_once_keeps_the_rest(services: Services, kicks: list[int]) -> None:
    task = new_task("u1", {"title": "t"}, now=NOW)
    event = events.task_envelope(events.TASK_CREATED, task)
    with services.unit_of_work() as uow:
        uow.tasks.add(task)
        assert uow.tasks.add_event_once(event)
        assert not uow.tasks.add_event_once(event)
    assert count_tasks(services) == 1 and kicks == [1]


@contextlib.contextmanager
def round_trips(engine: Engine) -> Iterator[list[int]]:
    """Counts the client-server round trips of every connection checked out of ``engine``'s pool meanwhile
    (libpq's protocol trace: the server ends each exchange with one ReadyForQuery); the count is appended
    to the yielded list on exit."""
    traced: list[Any] = []
    counted: list[int] = []
    with tempfile.TemporaryFile() as trace:

        def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            dbapi_connection.pgconn.trace(os.dup(trace.fileno()))
            traced.append(dbapi_connection)

        event.listen(engine, "checkout", checkout)
        try:
            yield counted
        finally:
            event.remove(engine, "checkout", checkout)
            for dbapi_connection in traced:
                dbapi_connection.pgconn.untrace()
            trace.seek(0)
            counted.append(trace.read().decode().count("ReadyForQuery"))


def postgres_only(services: Services) -> None:
    if services.engine.dialect.name != "postgresql":
        pytest.skip("round trips are counted with libpq's trace (Postgres only)")


def rows_of(services: Services, task_id: uuid.UUID) -> tuple[int, int, int, int]:
    """(tasks, tags, reminders, outbox rows) stored for ``task_id``."""
    with services.sessions() as session:
        tags = session.scalar(select(func.count()).where(TaskTagRow.task_id == task_id))
        reminders = session.scalar(select(func.count()).where(ReminderRow.task_id == task_id))
        outbox = session.scalar(select(func.count()).where(OutboxRow.key == str(task_id)))
    with services.unit_of_work(read_only=True) as uow:
        tasks = 0 if uow.tasks.get("u1", task_id) is None else 1
    return tasks, tags or 0, reminders or 0, outbox or 0


def full_task() -> Any:
    return new_task(
        "u1",
        {"title": "t", "tags": ["a", "b"], "due_at": "2030-03-02T09:00:00Z", "reminders": ["PT1H"]},
        now=NOW,
    )


def test_unit_of_work_create_alone_on_postgres_is_one_round_trip(
    services: Services, kicks: list[int]
) -> None:
    postgres_only(services)
    task = full_task()
    with round_trips(services.engine) as counted, services.unit_of_work() as uow:
        uow.tasks.add(task, events.task_envelope(events.TASK_CREATED, task))
    assert counted == [2]  # the statement alone in autocommit (no BEGIN, no COMMIT), then its NOTIFY
    assert rows_of(services, task.id) == (1, 2, 1, 2) and kicks == [1]


def test_unit_of_work_create_and_another_write_on_postgres_is_one_transaction(
    services: Services, kicks: list[int]
) -> None:
    postgres_only(services)
    task = full_task()
    with round_trips(services.engine) as counted, services.unit_of_work() as uow:
        uow.tasks.add(task, events.task_envelope(events.TASK_CREATED, task))
        uow.tasks.add_event(events.task_envelope(events.TASK_UPDATED, task))
    assert counted == [5]  # BEGIN, the create, the event, COMMIT, then the NOTIFY of both
    assert rows_of(services, task.id) == (1, 2, 1, 4) and kicks == [1]


def test_unit_of_work_create_failing_outbox_insert_writes_nothing(
    services: Services, kicks: list[int]
) -> None:
    first, second = full_task(), full_task()
    created = events.task_envelope(events.TASK_CREATED, first)
    with services.unit_of_work() as uow:
        uow.tasks.add(first, created)
    with pytest.raises(IntegrityError), services.unit_of_work() as uow:
        uow.tasks.add(second, created)  # the same event id again: its outbox rows break a unique key
    assert rows_of(services, second.id) == (0, 0, 0, 0)
    assert rows_of(services, first.id) == (1, 2, 1, 2) and kicks == [1]


def test_unit_of_work_create_then_failing_write_rolls_the_create_back(
    services: Services, kicks: list[int]
) -> None:
    first, second = full_task(), full_task()
    created = events.task_envelope(events.TASK_CREATED, first)
    with services.unit_of_work() as uow:
        uow.tasks.add(first, created)
    with pytest.raises(IntegrityError), services.unit_of_work() as uow:
        uow.tasks.add(second)
        uow.tasks.add_event(created)  # breaks the outbox's unique key after the create
    assert rows_of(services, second.id) == (0, 0, 0, 0) and kicks == [1]


def test_unit_of_work_create_then_duplicate_occurrence_keeps_the_create(
    services: Services, kicks: list[int]
) -> None:
    task = full_task()
    with services.unit_of_work() as uow:
        uow.tasks.add(task)
        assert not uow.tasks.add_occurrence(task)  # the same task again: its savepoint rolls back
    assert rows_of(services, task.id) == (1, 2, 1, 0)
