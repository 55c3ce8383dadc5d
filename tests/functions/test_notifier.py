"""The notifier on a real database and state store: per-channel dedupe, independent channels, stale events."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tasktide.db.models import NotificationRow, NotificationSettingsRow
from tasktide.db.repository import TaskRepository
from tasktide.domain.tasks import Task, new_task, set_completed
from tasktide.functions import _kit, notifier
from tasktide.messaging import codec
from tasktide.messaging.events import REMINDER_DUE, ReminderDueData
from tasktide.services import Services


@pytest.fixture
def installed(services: Services) -> Iterator[Services]:
    """``services`` bound to the functions called directly in this test (what a function server does
    per app)."""
    with _kit.serving(services):
        yield services


def add_task(services: Services, *, webhook: bool = False, email: bool = False) -> Task:
    now = datetime.now(UTC)
    task = new_task("u1", {"title": "t", "due_at": (now + timedelta(hours=1)).isoformat()}, now=now)
    with services.sessions() as session, session.begin():
        TaskRepository(session).add(task)
        session.merge(
            NotificationSettingsRow(
                user_id="u1",
                webhook_url="http://hooks.invalid/x" if webhook else None,
                email="u1@example.com" if email else None,
                updated_at=now,
            )
        )
    return task


def reminder_event(task: Task) -> codec.CloudEvent:
    assert task.due_at is not None
    data = ReminderDueData(
        reminder_id=uuid.uuid4(),
        task_id=task.id,
        user_id=task.user_id,
        title=task.title,
        offset="PT15M",
        remind_at=task.due_at - timedelta(minutes=15),
        due_at=task.due_at,
        fired_at=datetime.now(UTC),
    )
    return codec.new_event(
        REMINDER_DUE, "/tasktide/reminders", data.model_dump(mode="json"), subject=str(task.id)
    )


def in_app_count(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count(NotificationRow.id))) or 0)


def test_deliver_once_concurrent_same_event_sends_once(installed: Services) -> None:
    sent: list[int] = []

    def send() -> None:
        time.sleep(0.05)
        sent.append(1)

    def attempt() -> None:
        with contextlib.suppress(notifier.InFlight):  # answered 5xx: redelivered later, not "sent"
            notifier.deliver_once(installed, "evt-1", "webhook", send)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sent == [1]
    assert notifier.deliver_once(installed, "evt-1", "webhook", send) == "duplicate"


def test_deliver_once_failed_send_is_retried_on_redelivery(installed: Services) -> None:
    def broken() -> None:
        raise OSError("connection refused")

    with pytest.raises(OSError):
        notifier.deliver_once(installed, "evt-2", "email", broken)
    assert notifier.deliver_once(installed, "evt-2", "email", lambda: None) == "sent"


def test_notifier_failing_webhook_still_sends_email_then_raises(
    installed: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails: list[str] = []
    monkeypatch.setattr(notifier, "send_email", lambda _s, _p, to, _r: emails.append(to))

    def refuse(*_: object) -> None:
        raise OSError("webhook down")

    monkeypatch.setattr(notifier, "send_webhook", refuse)
    event = reminder_event(add_task(installed, webhook=True, email=True))
    with pytest.raises(notifier.ChannelsFailed, match="webhook"):
        notifier.notifier(event)
    assert emails == ["u1@example.com"] and in_app_count(installed) == 1
    with pytest.raises(notifier.ChannelsFailed):
        notifier.notifier(event)  # redelivery: only the webhook is tried again
    assert emails == ["u1@example.com"] and in_app_count(installed) == 1


def test_notifier_task_completed_since_the_scan_stays_silent(installed: Services) -> None:
    task = add_task(installed)
    with installed.sessions() as session, session.begin():
        TaskRepository(session).save(
            set_completed(task, True, now=datetime.now(UTC)), expected_version=task.version
        )
    notifier.notifier(reminder_event(task))
    assert in_app_count(installed) == 0


def test_deliver_once_claim_left_by_crash_is_redelivered_not_duplicate(installed: Services) -> None:
    """Issue 12 finding 6: a process died mid-send, leaving the 'sending' claim. The redelivery must not
    count it as sent: it answers 5xx while the lease holds, then sends (same webhook-id) after it expires."""
    key = "notified:evt-crash:webhook"
    assert installed.state.put_if_absent(key, b"sending", ttl_seconds=notifier.CLAIM_TTL)
    sent: list[int] = []
    with pytest.raises(notifier.InFlight):
        notifier.deliver_once(installed, "evt-crash", "webhook", lambda: sent.append(1))
    assert sent == []
    installed.state.delete(key)  # what the store does when the claim's TTL (the lease) runs out
    assert notifier.deliver_once(installed, "evt-crash", "webhook", lambda: sent.append(1)) == "sent"
    assert sent == [1]
    assert notifier.deliver_once(installed, "evt-crash", "webhook", lambda: sent.append(1)) == "duplicate"


def test_notifier_forged_title_replaced_by_stored_title(
    installed: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 finding 1: a forged reminder.due with a made-up title reached the inbox and the webhook."""
    payloads: list[dict[str, object]] = []
    monkeypatch.setattr(notifier, "send_webhook", lambda _u, _s, _i, payload, **_: payloads.append(payload))
    installed.__dict__["webhook_secret"] = "whsec_dGVzdA=="  # the cached secret (no store here)
    task = add_task(installed, webhook=True)
    forged = reminder_event(task)
    forged.data["title"] = "Your account is locked: log in at https://evil.example"
    notifier.notifier(forged)
    with installed.sessions() as session:
        titles = [row.title for row in session.scalars(select(NotificationRow))]
    assert titles == ["Reminder: t"]
    assert payloads and payloads[0]["data"]["title"] == "t"  # type: ignore[index]
