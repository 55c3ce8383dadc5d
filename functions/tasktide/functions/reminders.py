"""reminders: each tick claims the reminders now due and announces them.

Consumes: the `reminders-tick` PingSource (`dev.knative.sources.ping`, every minute on a cluster).
Emits (outbox): one `com.tasktide.reminder.due` per claimed reminder. Claims are atomic
(`UPDATE ... RETURNING`, `FOR UPDATE SKIP LOCKED` on Postgres), so concurrent scanners never share a
reminder; the partial index on unfired `remind_at` keeps the scan O(due reminders).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import functions_framework
from sqlalchemy.exc import IntegrityError

from tasktide.db.repository import ClaimedReminder, TaskRepository
from tasktide.domain.reminders import should_fire
from tasktide.functions import _kit
from tasktide.messaging import events
from tasktide.observability import metrics

REMINDER_NAMESPACE = uuid.UUID("2b0f8c6e-0d53-4b8e-9b5e-3c8d9a1e7f42")


def reminder_event_id(reminder: ClaimedReminder) -> str:
    """Stable per (reminder, time): a re-emitted reminder is deduplicated downstream."""
    return str(uuid.uuid5(REMINDER_NAMESPACE, f"{reminder.id}:{reminder.remind_at.isoformat()}"))


BATCH = 500


def announce(repo: TaskRepository, reminder: ClaimedReminder, now: datetime) -> bool:
    """Write the `reminder.due` event of one claimed reminder; False when the task is gone or past due."""
    task = repo.get(reminder.user_id, reminder.task_id)
    if task is None or not should_fire(remind_at=reminder.remind_at, due_at=reminder.due_at, now=now):
        return False
    data = events.ReminderDueData(
        reminder_id=reminder.id,
        task_id=reminder.task_id,
        user_id=reminder.user_id,
        title=task.title,
        offset=reminder.offset,
        remind_at=reminder.remind_at,
        due_at=reminder.due_at,
        fired_at=now,
    )
    event_id = reminder_event_id(reminder)
    envelope = events.envelope(
        events.REMINDER_DUE, "reminders", str(reminder.task_id), data, event_id=event_id
    )
    try:
        with repo.session.begin_nested():
            repo.add_event(envelope)
    except IntegrityError:  # announced before: never let one row block the whole scan
        return False
    metrics.REMINDER_LATENESS.observe(max(0.0, (now - reminder.remind_at).total_seconds()))
    return True


def scan(now: datetime) -> tuple[int, int]:
    """Claim and announce every due reminder, a batch per transaction, until none is left.

    Returns (fired, skipped because the task is already past due)."""
    services = _kit.services()
    fired = skipped = 0
    while True:
        with services.sessions() as session, session.begin():
            repo = TaskRepository(session)
            claimed = repo.claim_due_reminders(now, limit=BATCH)
            for reminder in claimed:
                if announce(repo, reminder, now):
                    fired += 1
                else:
                    skipped += 1
        services.committed()
        if len(claimed) < BATCH:
            break
    metrics.REMINDERS_FIRED.inc(fired)
    metrics.REMINDERS_SKIPPED.inc(skipped)
    return fired, skipped


@functions_framework.cloud_event
def reminders(event: Any) -> None:
    with _kit.bind_event("reminders", event):
        fired, skipped = scan(datetime.now(UTC))
        metrics.EVENTS_CONSUMED.labels("reminders", _kit.attr(event, "type") or "", "ok").inc()
        # an idle tick (every second with --ping-every 1s) is DEBUG; a tick that did something is INFO
        level = logging.INFO if fired or skipped else logging.DEBUG
        _kit.log.log(level, "reminder scan fired %d, skipped %d past-due", fired, skipped)
