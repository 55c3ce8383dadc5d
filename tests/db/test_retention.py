"""Retention on a real database: sent outbox rows and expired state rows older than their age are
deleted and counted; unsent rows and live state stay (issue 12 finding 8: 65 MB after 30k events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from tasktide.db import retention
from tasktide.db.models import OutboxRow
from tasktide.db.state import state_table
from tasktide.observability import metrics
from tasktide.services import Services


def outbox_row(event_id: str, created: datetime, sent: datetime | None) -> OutboxRow:
    return OutboxRow(
        event_id=event_id, topic="task-events", key="k", type="t", event={}, created_at=created, sent_at=sent
    )


def count(services: Services, table: object) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


def test_purge_old_sent_outbox_and_expired_state_deleted_and_counted(services: Services) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=8)
    with services.sessions() as session, session.begin():
        session.add_all(
            [
                outbox_row("old-sent", old, old),
                outbox_row("old-unsent", old, None),
                outbox_row("new-sent", now, now),
            ]
        )
    services.state.put_if_absent("expired", b"x", ttl_seconds=1)
    services.state.put_if_absent("live", b"x", ttl_seconds=3600)
    with services.sessions() as session, session.begin():
        session.execute(
            state_table.update()
            .where(state_table.c.key == "expired")
            .values(expires_at=(now - timedelta(days=2)).replace(tzinfo=None))
        )
    before = metrics.RETENTION_DELETED.labels("outbox")._value.get()
    deleted = retention.purge(services.sessions, 7 * 24 * 3600, 24 * 3600, now=now)
    assert deleted == {"outbox": 1, "dapr_state": 1, "idempotency_keys": 0}
    assert metrics.RETENTION_DELETED.labels("outbox")._value.get() == before + 1
    with services.sessions() as session:
        left = sorted(session.scalars(select(OutboxRow.event_id)))
    assert left == ["new-sent", "old-unsent"]
    assert services.state.get("live") is not None and count(services, state_table) == 1
