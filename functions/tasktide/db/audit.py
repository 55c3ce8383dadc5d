"""The audit log repository: append-only task events, one row per CloudEvent id, read as a task's history."""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from tasktide.app.ports import AuditEntry
from tasktide.db.engine import dialect_insert
from tasktide.db.models import AuditRow

AUDIT: Table = AuditRow.__table__  # type: ignore[assignment]
_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEntry))  # the columns but `id`, by name


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, entry: AuditEntry) -> bool:
        """Append `entry` (one statement); False when its event id is already recorded."""
        values = {**dataclasses.asdict(entry), "changed": list(entry.changed)}
        insert = dialect_insert(self.session, AUDIT).values(values).on_conflict_do_nothing()
        return self.session.execute(insert.returning(AUDIT.c.id)).first() is not None

    def history(self, user_id: str, task_id: uuid.UUID) -> list[AuditEntry]:
        stmt = (
            select(AUDIT)
            .where(AUDIT.c.user_id == user_id, AUDIT.c.task_id == str(task_id))
            .order_by(AUDIT.c.time, AUDIT.c.id)
        )
        return [
            AuditEntry(**{**{name: r._mapping[name] for name in _FIELDS}, "changed": tuple(r.changed)})
            for r in self.session.execute(stmt).all()
        ]
