"""`GET /api/{user_id}/tasks/{id}/history`: the task's audit trail, oldest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from tasktide.api.auth import CurrentUser
from tasktide.api.deps import ServicesDep
from tasktide.api.schemas import ProblemOut
from tasktide.db.models import AuditRow
from tasktide.db.repository import TaskRepository
from tasktide.domain.errors import NotFound

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["history"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemOut, "content": {"application/problem+json": {}}}
}


class HistoryEntry(BaseModel):
    event_id: str
    type: str
    time: datetime
    actor: str | None
    changed: list[str]


@router.get("/{task_id}/history", responses=NOT_FOUND)
def task_history(user_id: CurrentUser, task_id: uuid.UUID, services: ServicesDep) -> list[HistoryEntry]:
    stmt = (
        select(AuditRow)
        .where(AuditRow.user_id == user_id, AuditRow.task_id == str(task_id))
        .order_by(AuditRow.time, AuditRow.id)
    )
    with services.sessions() as session:
        entries = [
            HistoryEntry(
                event_id=r.event_id, type=r.type, time=r.time, actor=r.actor, changed=list(r.changed)
            )
            for r in session.scalars(stmt)
        ]
        # No trail and no such task of this user's (e.g. another user's task): 404, as every task route.
        if not entries and TaskRepository(session).get(user_id, task_id) is None:
            raise NotFound(f"Task {task_id} does not exist for user {user_id}.")
    return entries
