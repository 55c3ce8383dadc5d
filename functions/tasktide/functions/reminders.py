"""reminders: each tick claims the reminders now due and announces them.

Consumes: the `reminders-tick` PingSource (`dev.knative.sources.ping`, every minute on a cluster).
Emits (outbox): one `com.tasktide.reminder.due` per claimed reminder. Claims are atomic
(`UPDATE ... RETURNING`, `FOR UPDATE SKIP LOCKED` on Postgres), so concurrent scanners never share a
reminder; the partial index on unfired `remind_at` keeps the scan O(due reminders).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import functions_framework

from tasktide.app import reminders as app
from tasktide.app.reminders import REMINDER_NAMESPACE, reminder_event_id
from tasktide.functions import _kit
from tasktide.observability import metrics

__all__ = ["BATCH", "REMINDER_NAMESPACE", "reminder_event_id", "reminders", "scan"]
BATCH = app.BATCH


def scan(now: datetime) -> tuple[int, int]:
    """Claim and announce every due reminder, a batch per transaction, until none is left.

    Returns (fired, skipped because the task is gone, already past due or announced before)."""
    done = app.scan(_kit.services().unit_of_work, now, batch=BATCH)
    for reminder in done.fired:
        metrics.REMINDER_LATENESS.observe(max(0.0, (now - reminder.remind_at).total_seconds()))
    metrics.REMINDERS_FIRED.inc(len(done.fired))
    metrics.REMINDERS_SKIPPED.inc(done.skipped)
    return len(done.fired), done.skipped


@functions_framework.cloud_event
def reminders(event: Any) -> None:
    with _kit.bind_event("reminders", event):
        fired, skipped = scan(datetime.now(UTC))
        metrics.EVENTS_CONSUMED.labels("reminders", _kit.attr(event, "type") or "", "ok").inc()
        # an idle tick (every second with --ping-every 1s) is DEBUG; a tick that did something is INFO
        level = logging.INFO if fired or skipped else logging.DEBUG
        _kit.log.log(level, "reminder scan fired %d, skipped %d past-due", fired, skipped)
