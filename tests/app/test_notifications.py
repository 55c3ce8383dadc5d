"""The notification use cases on real SQLite and Postgres: settings upsert, in-app rows and the sent event
written once per reminder event, read marks scoped to the owner."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tasktide.app.notifications import Notifications
from tasktide.app.ports import ChannelSettings
from tasktide.app.tasks import Tasks
from tasktide.db.models import OutboxRow
from tasktide.domain.errors import NotFound
from tasktide.domain.tasks import Task
from tasktide.messaging import events
from tasktide.services import Services

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def due(task: Task) -> events.ReminderDueData:
    assert task.due_at is not None
    return events.ReminderDueData(
        reminder_id=uuid.uuid4(),
        task_id=task.id,
        user_id=task.user_id,
        title="forged",
        offset="PT15M",
        remind_at=task.due_at - timedelta(minutes=15),
        due_at=task.due_at,
        fired_at=NOW,
    )


def test_notifications_set_channels_twice_keeps_the_last(services: Services) -> None:
    notes = Notifications(services.unit_of_work, clock=lambda: NOW)
    assert notes.channels("u1") == ChannelSettings()
    notes.set_channels("u1", ChannelSettings(webhook_url="https://hooks.example/a", email="a@example.com"))
    notes.set_channels("u1", ChannelSettings(email="b@example.com"))
    assert notes.channels("u1") == ChannelSettings(email="b@example.com")


def test_notifications_redelivered_reminder_writes_in_app_and_sent_once(services: Services) -> None:
    notes = Notifications(services.unit_of_work, clock=lambda: NOW)
    task = Tasks(services.unit_of_work).create("u1", {"title": "pay", "due_at": "2030-01-02T09:00:00Z"})
    data = notes.still_due(due(task))
    assert data is not None and data.title == "pay"  # the stored title, not the event's
    assert notes.notify_in_app("evt-1", data)[0] is True
    assert notes.notify_in_app("evt-1", data)[0] is False
    assert notes.announce_sent("evt-1", data, ["in_app"]) is True
    assert notes.announce_sent("evt-1", data, ["in_app"]) is False
    assert [n.title for n in notes.recent("u1")] == ["Reminder: pay"]
    with services.sessions() as session:
        sent = select(func.count()).where(OutboxRow.type == events.NOTIFICATION_SENT)
        assert session.scalar(sent) == len(events.topics_for(events.NOTIFICATION_SENT))


def test_notifications_completed_task_is_no_longer_due(services: Services) -> None:
    tasks = Tasks(services.unit_of_work)
    task = tasks.create("u1", {"title": "pay", "due_at": "2030-01-02T09:00:00Z"})
    tasks.complete("u1", task.id, True)
    assert Notifications(services.unit_of_work).still_due(due(task)) is None


def test_notifications_mark_read_keeps_first_time_and_is_owner_only(services: Services) -> None:
    clock = [NOW]
    notes = Notifications(services.unit_of_work, clock=lambda: clock[0])
    task = Tasks(services.unit_of_work).create("u1", {"title": "pay", "due_at": "2030-01-02T09:00:00Z"})
    notes.notify_in_app("evt-1", due(task))
    (found,) = notes.recent("u1", unread=True)
    assert notes.mark("u1", found.id).read_at == NOW
    clock[0] = NOW + timedelta(hours=1)
    assert notes.mark("u1", found.id).read_at == NOW
    assert notes.recent("u1", unread=True) == []
    assert notes.mark("u1", found.id, read=False).read_at is None
    with pytest.raises(NotFound):
        notes.mark("u2", found.id)
