"""Reminders: claim the reminders now due and announce each with one `com.tasktide.reminder.due` event.

Claims are atomic (a reminder is marked fired by exactly one scanner), a batch a transaction; each event's
id is derived from (reminder, time), so a reminder announced before is not announced twice. A reminder of
a task that is gone, or already past due (a clock jump, a long outage), is skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from tasktide.app.ports import ClaimedReminder, TaskStore, UnitOfWorkFactory
from tasktide.domain.reminders import should_fire
from tasktide.messaging import events

REMINDER_NAMESPACE = uuid.UUID("2b0f8c6e-0d53-4b8e-9b5e-3c8d9a1e7f42")
BATCH = 500


def reminder_event_id(reminder: ClaimedReminder) -> str:
    """Stable per (reminder, time): a re-emitted reminder is deduplicated downstream."""
    return str(uuid.uuid5(REMINDER_NAMESPACE, f"{reminder.id}:{reminder.remind_at.isoformat()}"))


@dataclass
class Scan:
    """What one scan did: the reminders announced, and how many were skipped."""

    fired: list[ClaimedReminder] = field(default_factory=list)
    skipped: int = 0


def announce(tasks: TaskStore, reminder: ClaimedReminder, now: datetime) -> bool:
    """Write the `reminder.due` event of one claimed reminder; False when the task is gone or past due, or
    the reminder was announced before (one row never blocks the whole scan)."""
    task = tasks.get(reminder.user_id, reminder.task_id)
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
    envelope = events.envelope(
        events.REMINDER_DUE, "reminders", str(reminder.task_id), data, event_id=reminder_event_id(reminder)
    )
    return tasks.add_event_once(envelope)


def scan(uow: UnitOfWorkFactory, now: datetime, *, batch: int = BATCH) -> Scan:
    """Claim and announce every due reminder, a batch per unit of work, until none is left."""
    result = Scan()
    while True:
        with uow() as work:
            claimed = work.tasks.claim_due_reminders(now, limit=batch)
            for reminder in claimed:
                if announce(work.tasks, reminder, now):
                    result.fired.append(reminder)
                else:
                    result.skipped += 1
        if len(claimed) < batch:
            return result
