"""The SQL unit of work on real SQLite and Postgres: one transaction, commit or roll back, and the relay
kicked only after a commit that wrote outbox rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tasktide.app.ports import AuditEntry, TaskQuery
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
