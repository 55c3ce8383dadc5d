"""`GET /api/{user_id}/tasks/{id}/history`: the task's audit trail, oldest first."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from tasktide.api.auth import CurrentUser
from tasktide.api.deps import ServicesDep
from tasktide.db.models import AuditRow

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["history"])


class HistoryEntry(BaseModel):
    event_id: str
    type: str
    time: datetime
    actor: str | None
    changed: list[str]


@router.get("/{task_id}/history")
def task_history(user_id: CurrentUser, task_id: uuid.UUID, services: ServicesDep) -> list[HistoryEntry]:
    stmt = (
        select(AuditRow)
        .where(AuditRow.user_id == user_id, AuditRow.task_id == str(task_id))
        .order_by(AuditRow.time, AuditRow.id)
    )
    with services.sessions() as session:
        return [
            HistoryEntry(
                event_id=r.event_id, type=r.type, time=r.time, actor=r.actor, changed=list(r.changed)
            )
            for r in session.scalars(stmt)
        ]
