"""The recurring function on real SQLite and Postgres: one next occurrence per completed occurrence, however
often (or late) the completion event arrives; what the database holds decides, not the event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tasktide.app.ports import TaskQuery
from tasktide.app.tasks import Tasks
from tasktide.db.models import OutboxRow
from tasktide.domain.tasks import Status, Task
from tasktide.functions import _kit, recurring
from tasktide.messaging import codec, events
from tasktide.observability import metrics
from tasktide.services import Services

DUE = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
WEEKLY = {"title": "standup", "due_at": DUE.isoformat(), "recurrence": "FREQ=WEEKLY;COUNT=2"}


@pytest.fixture
def installed(services: Services) -> Iterator[Services]:
    """``services`` bound to the functions called directly in this test (what a function server does
    per app)."""
    with _kit.serving(services):
        yield services


def completion(task: Task, kind: str = events.TASK_COMPLETED) -> codec.CloudEvent:
    data = events.TaskEventData(task=events.TaskSnapshot.of(task), changed=["status"], actor=task.user_id)
    return codec.new_event(kind, "/tasktide/api", data.model_dump(mode="json"), subject=str(task.id))


def pending(services: Services) -> list[Task]:
    return Tasks(services.unit_of_work).search("u1", TaskQuery(status="pending", sort="due_at"))


def created_events(services: Services) -> list[str | None]:
    with services.sessions() as session:
        stmt = select(OutboxRow.event).where(OutboxRow.type == events.TASK_CREATED)
        return sorted({row["data"]["task"]["id"] for row in session.scalars(stmt)})


def consumed(result: str) -> float:
    return metrics.EVENTS_CONSUMED.labels("recurring", events.TASK_COMPLETED, result)._value.get()


def test_recurring_completed_occurrence_creates_the_next_at_the_next_rule_instance(
    installed: Services,
) -> None:
    tasks = Tasks(installed.unit_of_work)
    first = tasks.create("u1", WEEKLY)
    done = tasks.complete("u1", first.id, True)
    before = metrics.OCCURRENCES_CREATED._value.get()
    recurring.recurring(completion(done))
    (nxt,) = pending(installed)
    assert (nxt.occurrence, nxt.due_at, nxt.series_id) == (2, DUE + timedelta(days=7), first.series_id)
    assert metrics.OCCURRENCES_CREATED._value.get() == before + 1
    assert str(nxt.id) in created_events(installed)


def test_recurring_redelivered_completion_creates_one_next_occurrence(installed: Services) -> None:
    tasks = Tasks(installed.unit_of_work)
    done = tasks.complete("u1", tasks.create("u1", WEEKLY).id, True)
    duplicates = consumed("duplicate_ignored")
    for _ in range(3):
        recurring.recurring(completion(done))
    assert len(pending(installed)) == 1
    assert len(created_events(installed)) == 2  # the first occurrence's and the next one's
    assert consumed("duplicate_ignored") == duplicates + 2


def test_recurring_completion_arriving_after_reopen_creates_nothing(installed: Services) -> None:
    tasks = Tasks(installed.unit_of_work)
    first = tasks.create("u1", WEEKLY)
    done = tasks.complete("u1", first.id, True)
    tasks.reopen("u1", first.id)  # the reopen committed before the completion event was delivered
    recurring.recurring(completion(done))
    assert [t.id for t in pending(installed)] == [first.id]


def test_recurring_one_off_task_creates_nothing(installed: Services) -> None:
    tasks = Tasks(installed.unit_of_work)
    done = tasks.complete("u1", tasks.create("u1", {"title": "once"}).id, True)
    recurring.recurring(completion(done))
    assert pending(installed) == [] and len(created_events(installed)) == 1


def test_recurring_last_occurrence_of_count_ends_the_series(installed: Services) -> None:
    tasks = Tasks(installed.unit_of_work)
    done = tasks.complete("u1", tasks.create("u1", WEEKLY).id, True)
    recurring.recurring(completion(done))
    (second,) = pending(installed)
    recurring.recurring(completion(tasks.complete("u1", second.id, True)))  # COUNT=2: no third
    assert pending(installed) == []
    assert all(t.status is Status.COMPLETED for t in Tasks(installed.unit_of_work).search("u1", TaskQuery()))


def test_recurring_event_of_another_type_raises_bad_event(installed: Services) -> None:
    task = Tasks(installed.unit_of_work).create("u1", WEEKLY)
    with pytest.raises(_kit.BadEvent):
        recurring.recurring(completion(task, events.TASK_UPDATED))
    assert len(pending(installed)) == 1
