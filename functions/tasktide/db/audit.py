"""The audit log repository: append-only task events, one row per CloudEvent id, read as a task's history."""

from __future__ import annotations

import uuid

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tasktide.app.ports import AuditEntry
from tasktide.db.models import AuditRow

AUDIT: Table = AuditRow.__table__  # type: ignore[assignment]


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, entry: AuditEntry) -> bool:
        """Append `entry` (one statement); False when its event id is already recorded."""
        dialect = postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite
        values = {
            "event_id": entry.event_id,
            "task_id": entry.task_id,
            "user_id": entry.user_id,
            "type": entry.type,
            "time": entry.time,
            "actor": entry.actor,
            "changed": list(entry.changed),
            "recorded_at": entry.recorded_at,
        }
        stmt = dialect.insert(AUDIT).values(values).on_conflict_do_nothing().returning(AUDIT.c.id)
        return self.session.execute(stmt).first() is not None

    def history(self, user_id: str, task_id: uuid.UUID) -> list[AuditEntry]:
        stmt = (
            select(AUDIT)
            .where(AUDIT.c.user_id == user_id, AUDIT.c.task_id == str(task_id))
            .order_by(AUDIT.c.time, AUDIT.c.id)
        )
        return [
            AuditEntry(
                event_id=r.event_id,
                task_id=r.task_id,
                user_id=r.user_id,
                type=r.type,
                time=r.time,
                actor=r.actor,
                changed=tuple(r.changed),
                recorded_at=r.recorded_at,
            )
            for r in self.session.execute(stmt)
        ]
