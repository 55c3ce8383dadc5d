"""The task commands on real SQLite and Postgres: state and events commit together (or not at all), the
relay is kicked after a commit that wrote events, and repeated or reordered work is idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tasktide.app.ports import TaskQuery
from tasktide.app.tasks import Occurrence, Tasks
from tasktide.db.models import OutboxRow
from tasktide.db.repository import TaskRepository
from tasktide.domain.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from tasktide.domain.tasks import Status, Task
from tasktide.messaging import events
from tasktide.services import Services

NOW = datetime(2030, 1, 7, 9, tzinfo=UTC)  # a Monday
WEEKLY = {"title": "standup", "due_at": "2030-01-07T09:00:00Z", "recurrence": "FREQ=WEEKLY;COUNT=3"}


@pytest.fixture
def kicks(services: Services) -> list[int]:
    """One entry per relay kick (the services' after-commit hook)."""
    kicked: list[int] = []
    services.after_commit.append(lambda: kicked.append(1))
    return kicked


@pytest.fixture
def tasks(services: Services) -> Iterator[Tasks]:
    yield Tasks(services.unit_of_work, clock=lambda: NOW)


def outbox(services: Services) -> list[tuple[str, str | None]]:
    """(type, subject) of each event in the outbox, one per event (not per topic)."""
    with services.sessions() as session:
        rows = session.execute(
            select(OutboxRow.type, OutboxRow.key, OutboxRow.event_id).order_by(OutboxRow.id)
        )
        seen: dict[str, tuple[str, str | None]] = {}
        for kind, key, event_id in rows:
            seen.setdefault(event_id, (kind, key))
    return list(seen.values())


def stored(services: Services, user_id: str = "u1") -> list[Task]:
    with services.sessions() as session:
        return TaskRepository(session).search(user_id, TaskQuery(sort="due_at"), now=NOW)


def test_tasks_create_commits_task_and_created_event_then_kicks(
    services: Services, tasks: Tasks, kicks: list[int]
) -> None:
    task = tasks.create(
        "u1", {"title": "write", "tags": ["a"]}, trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    )
    assert stored(services) == [task]
    assert outbox(services) == [(events.TASK_CREATED, str(task.id))]
    assert kicks == [1]


def test_tasks_create_invalid_fields_writes_nothing(
    services: Services, tasks: Tasks, kicks: list[int]
) -> None:
    with pytest.raises(ValidationFailed):
        tasks.create("u1", {"title": ""})
    assert stored(services) == [] and outbox(services) == [] and kicks == []


def test_tasks_complete_then_reopen_writes_one_event_each(services: Services, tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "write"})
    done = tasks.complete("u1", task.id, True)
    again = tasks.complete("u1", task.id, True)  # already completed: no change, no event
    reopened = tasks.reopen("u1", task.id)
    assert done.status is Status.COMPLETED and again == done and reopened.status is Status.PENDING
    assert [kind for kind, _ in outbox(services)] == [
        events.TASK_CREATED,
        events.TASK_COMPLETED,
        events.TASK_REOPENED,
    ]


def test_tasks_complete_without_target_toggles(tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "write"})
    assert tasks.complete("u1", task.id).status is Status.COMPLETED
    assert tasks.complete("u1", task.id).status is Status.PENDING


def test_tasks_replace_unchanged_fields_writes_no_event(
    services: Services, tasks: Tasks, kicks: list[int]
) -> None:
    task = tasks.create("u1", {"title": "write", "priority": "high"})
    same = tasks.replace("u1", task.id, {"title": "write", "priority": "high"})
    assert same == task and len(outbox(services)) == 1 and kicks == [1]


def test_tasks_patch_merges_and_records_changed_fields(services: Services, tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "write", "tags": ["a"]})
    patched = tasks.patch("u1", task.id, {"title": "rewrite", "tags": None})
    assert (patched.title, patched.tags, patched.version) == ("rewrite", (), 2)
    assert outbox(services)[-1] == (events.TASK_UPDATED, str(task.id))


def test_tasks_failed_precondition_writes_nothing(services: Services, tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "write"})

    def refuse(_: Task) -> None:
        raise PreconditionFailed("stale")

    with pytest.raises(PreconditionFailed):
        tasks.patch("u1", task.id, {"title": "lost"}, check=refuse)
    with pytest.raises(PreconditionFailed):
        tasks.delete("u1", task.id, check=refuse)
    assert stored(services) == [task] and len(outbox(services)) == 1


def test_tasks_event_write_failing_rolls_back_the_task_change(
    services: Services, tasks: Tasks, kicks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    task = tasks.create("u1", {"title": "write"})

    def broken(self: TaskRepository, event: events.Envelope) -> None:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(TaskRepository, "add_event", broken)
    with pytest.raises(RuntimeError):
        tasks.complete("u1", task.id, True)
    assert stored(services) == [task] and len(outbox(services)) == 1 and kicks == [1]


def test_tasks_other_users_task_raises_not_found(tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "mine"})
    with pytest.raises(NotFound):
        tasks.get("u2", task.id)
    with pytest.raises(NotFound):
        tasks.delete("u2", task.id)
    assert tasks.get("u1", task.id) == task


def test_tasks_delete_writes_deleted_event(services: Services, tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "write"})
    assert tasks.delete("u1", task.id) == task
    assert stored(services) == [] and outbox(services)[-1] == (events.TASK_DELETED, str(task.id))


def test_tasks_next_occurrence_redelivered_creates_once(services: Services, tasks: Tasks) -> None:
    first = tasks.create("u1", WEEKLY)
    tasks.complete("u1", first.id, True)
    assert tasks.next_occurrence("u1", first.id) is Occurrence.CREATED
    assert tasks.next_occurrence("u1", first.id) is Occurrence.DUPLICATE
    pending = [t for t in stored(services) if t.status is Status.PENDING]
    assert [(t.occurrence, t.due_at) for t in pending] == [(2, NOW + timedelta(days=7))]
    created = [kind for kind, _ in outbox(services) if kind == events.TASK_CREATED]
    assert len(created) == 2  # the first occurrence's and the next one's, once


def test_tasks_next_occurrence_of_reopened_or_one_off_task_creates_nothing(
    services: Services, tasks: Tasks
) -> None:
    series = tasks.create("u1", WEEKLY)
    one_off = tasks.create("u1", {"title": "once"})
    tasks.complete("u1", one_off.id, True)
    assert tasks.next_occurrence("u1", series.id) is Occurrence.NONE  # still pending
    assert tasks.next_occurrence("u1", one_off.id) is Occurrence.NONE
    assert tasks.next_occurrence("u1", uuid.uuid4()) is Occurrence.NONE
    assert tasks.next_occurrence("u1", series.id, recurring=False) is Occurrence.NONE
    assert len(stored(services)) == 2


def test_tasks_skip_then_completion_event_of_same_occurrence_creates_next_once(
    services: Services, tasks: Tasks
) -> None:
    first = tasks.create("u1", WEEKLY)
    skipped, nxt = tasks.skip("u1", first.id)
    assert nxt is not None and skipped.exdates == (NOW,)
    assert tasks.next_occurrence("u1", first.id) is Occurrence.NONE  # the skipped occurrence is gone
    assert [t.id for t in stored(services)] == [nxt.id]
    assert [kind for kind, _ in outbox(services)] == [
        events.TASK_CREATED,
        events.TASK_SKIPPED,
        events.TASK_CREATED,
    ]


def test_tasks_skip_one_off_task_raises_conflict(services: Services, tasks: Tasks) -> None:
    task = tasks.create("u1", {"title": "once"})
    with pytest.raises(Conflict):
        tasks.skip("u1", task.id)
    assert stored(services) == [task]


def test_tasks_search_filters_by_status(tasks: Tasks) -> None:
    a = tasks.create("u1", {"title": "a"})
    b = tasks.create("u1", {"title": "b"})
    tasks.complete("u1", b.id, True)
    assert [t.id for t in tasks.search("u1", TaskQuery(status="pending"))] == [a.id]
