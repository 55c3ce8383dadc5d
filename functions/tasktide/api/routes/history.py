"""`GET /api/{user_id}/tasks/{id}/history`: the task's audit trail, oldest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from tasktide.api.auth import CurrentUser
from tasktide.api.deps import AuditDep, DbCallsDep
from tasktide.api.schemas import ProblemOut

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
async def task_history(
    user_id: CurrentUser, task_id: uuid.UUID, audit: AuditDep, db: DbCallsDep
) -> list[HistoryEntry]:
    return [
        HistoryEntry(event_id=e.event_id, type=e.type, time=e.time, actor=e.actor, changed=list(e.changed))
        for e in await db.blocking(audit.history, user_id, task_id)
    ]
