"""The reminder scan use case on real SQLite and Postgres: each due reminder announced once, in batches;
reminders of tasks already past due are skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tasktide.app import reminders
from tasktide.app.tasks import Tasks
from tasktide.db.models import OutboxRow
from tasktide.messaging import events
from tasktide.services import Services

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def add(services: Services, due_in: timedelta, offset: str = "PT10M") -> None:
    due = (NOW + due_in).isoformat()
    Tasks(services.unit_of_work, clock=lambda: NOW - timedelta(days=1)).create(
        "u1", {"title": "t", "due_at": due, "reminders": [offset]}
    )


def announced(services: Services) -> list[str]:
    with services.sessions() as session:
        stmt = select(OutboxRow.event_id).where(OutboxRow.type == events.REMINDER_DUE)
        return sorted(set(session.scalars(stmt)))


def test_reminders_scan_in_batches_announces_each_due_reminder_once(services: Services) -> None:
    kicks: list[int] = []
    services.after_commit.append(lambda: kicks.append(1))
    for _ in range(5):
        add(services, timedelta(minutes=5))  # reminded 5 minutes ago, due in 5
    add(services, timedelta(hours=2))  # not due yet
    kicks.clear()
    done = reminders.scan(services.unit_of_work, NOW, batch=2)
    assert (len(done.fired), done.skipped) == (5, 0)
    assert len(announced(services)) == 5 and len(kicks) == 3  # three batches wrote events
    again = reminders.scan(services.unit_of_work, NOW, batch=2)
    assert (again.fired, again.skipped) == ([], 0)


def test_reminders_scan_task_past_due_skips_without_event(services: Services) -> None:
    add(services, -timedelta(minutes=1))
    done = reminders.scan(services.unit_of_work, NOW)
    assert (done.fired, done.skipped) == ([], 1)
    assert announced(services) == []


def test_reminders_event_id_is_stable_per_reminder_and_time(services: Services) -> None:
    add(services, timedelta(minutes=5))
    (fired,) = reminders.scan(services.unit_of_work, NOW).fired
    assert announced(services) == [reminders.reminder_event_id(fired)]
