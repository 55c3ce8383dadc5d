"""Retention: sent outbox rows, expired state rows and old idempotency keys are deleted after a set age.

Consumes: the settings ``outbox_retention`` / ``state_retention`` / ``idempotency_retention`` (seconds) and
a database session factory; run by every `outbox-sweep` tick (the relay function). Emits: DELETEs in
batches of ``BATCH`` rows (bounded per tick) and ``tasktide_retention_deleted_total{table}``; the same
transaction runs `tasktide.db.repairs`.

A sent outbox row's event id also dedupes re-emitted events (the notifier's `notification.sent`), so keep
``outbox_retention`` longer than any redelivery window (the default is 7 days).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from tasktide.db import idempotency, repairs, state
from tasktide.db.models import OutboxRow
from tasktide.observability import metrics

BATCH = 1000


def purge(
    sessions: sessionmaker[Session],
    outbox_age: float,
    state_age: float,
    now: datetime | None = None,
    idempotency_age: float = 24 * 3600,
) -> dict[str, int]:
    """Delete at most BATCH old rows of each table; the number deleted per table."""
    now = now or datetime.now(UTC)
    deleted = {"outbox": 0, "dapr_state": 0, "idempotency_keys": 0}
    with sessions() as session, session.begin():
        cutoff = now - timedelta(seconds=outbox_age)
        ids = select(OutboxRow.id).where(OutboxRow.sent_at.is_not(None), OutboxRow.sent_at < cutoff)
        result = session.execute(
            delete(OutboxRow).where(OutboxRow.id.in_(ids.limit(BATCH).scalar_subquery()))
        )
        deleted["outbox"] = int(getattr(result, "rowcount", 0) or 0)
        deleted["dapr_state"] = state.purge(session, state_age, now)
        deleted["idempotency_keys"] = idempotency.purge(session, idempotency_age, now)
        repairs.repair(session)  # not retention, but the same tick: see tasktide.db.repairs
    for table, count in deleted.items():
        if count:
            metrics.RETENTION_DELETED.labels(table).inc(count)
    return deleted
