"""The reminders function's scan on a real database: every due reminder fires once, in batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tasktide.db.models import OutboxRow
from tasktide.db.repository import TaskQuery, TaskRepository
from tasktide.domain.tasks import new_task, revise_task, task_fields
from tasktide.functions import _kit, reminders
from tasktide.messaging.events import REMINDER_DUE
from tasktide.observability import metrics
from tasktide.services import Services


@pytest.fixture
def installed(services: Services) -> Iterator[Services]:
    """``services`` bound to the functions called directly in this test (what a function server does
    per app)."""
    with _kit.serving(services):
        yield services


def add_task(services: Services, due_at: datetime, offset: str = "PT10M") -> None:
    task = new_task("u1", {"title": "t", "due_at": due_at.isoformat(), "reminders": [offset]}, now=due_at)
    with services.sessions() as session, session.begin():
        TaskRepository(session).add(task)


def reminder_events(services: Services) -> list[str]:
    with services.sessions() as session:
        return list(session.scalars(select(OutboxRow.event_id).where(OutboxRow.type == REMINDER_DUE)))


def test_reminders_scan_more_due_than_a_batch_fires_all_once(
    installed: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reminders, "BATCH", 3)
    now = datetime.now(UTC)
    for _ in range(7):
        add_task(installed, now + timedelta(minutes=5))  # reminder 5 minutes ago, task still ahead
    assert reminders.scan(now) == (7, 0)
    assert reminders.scan(now) == (0, 0)
    events = reminder_events(installed)
    assert len(events) == 7 and len(set(events)) == 7


def test_reminders_scan_task_already_past_due_skips(installed: Services) -> None:
    now = datetime.now(UTC)
    add_task(installed, now - timedelta(minutes=1))  # reminder and due date both passed
    before = metrics.REMINDERS_SKIPPED._value.get()
    assert reminders.scan(now) == (0, 1)
    assert reminder_events(installed) == []
    assert metrics.REMINDERS_SKIPPED._value.get() == before + 1  # a clock jump's skips are counted


def test_reminders_scan_due_moved_away_and_back_fires_again_without_blocking(installed: Services) -> None:
    now = datetime.now(UTC)
    add_task(installed, now + timedelta(minutes=5))
    assert reminders.scan(now) == (1, 0)
    with installed.sessions() as session, session.begin():
        repo = TaskRepository(session)
        (task,) = repo.search("u1", TaskQuery(), now=now)
        moved = revise_task(
            task, {**task_fields(task), "due_at": (now + timedelta(days=1)).isoformat()}, now=now
        )
        repo.save(moved, expected_version=task.version)
        back = revise_task(moved, {**task_fields(moved), "due_at": task_fields(task)["due_at"]}, now=now)
        repo.save(back, expected_version=moved.version)
    add_task(installed, now + timedelta(minutes=6))
    assert reminders.scan(now) == (2, 0)  # the re-armed reminder and the other task's both fire
    assert len(set(reminder_events(installed))) == 3
