"""Notification settings (`webhook_url`, `email`) and the in-app notifications list."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from sqlalchemy import select

from tasktide.api.auth import CurrentUser
from tasktide.api.deps import ServicesDep
from tasktide.api.problems import Problem
from tasktide.db.models import NotificationRow, NotificationSettingsRow
from tasktide.edges import egress

router = APIRouter(prefix="/api/{user_id}", tags=["notifications"])
EMAIL = r"^[^@\s\x00]{1,64}@[^@\s\x00]{1,255}$"


class NotificationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: AnyHttpUrl | None = None
    email: Annotated[str | None, Field(pattern=EMAIL, max_length=320)] = None


class NotificationOut(BaseModel):
    id: uuid.UUID
    task_id: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    read: bool


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    read: bool = True


def _out(row: NotificationRow) -> NotificationOut:
    return NotificationOut(
        id=row.id,
        task_id=row.task_id,
        title=row.title,
        body=row.body,
        created_at=row.created_at,
        read_at=row.read_at,
        read=row.read_at is not None,
    )


@router.get("/notification-settings")
def get_settings(user_id: CurrentUser, services: ServicesDep) -> NotificationSettings:
    with services.sessions() as session:
        row = session.get(NotificationSettingsRow, user_id)
    if row is None:
        return NotificationSettings()
    return NotificationSettings.model_validate({"webhook_url": row.webhook_url, "email": row.email})


@router.put("/notification-settings")
def put_settings(
    user_id: CurrentUser, body: NotificationSettings, services: ServicesDep
) -> NotificationSettings:
    if body.webhook_url is not None:
        try:  # names are resolved and checked again on every send (DNS can change)
            egress.check_literal(str(body.webhook_url), allow_local=services.settings.webhook_allow_local)
        except egress.EgressRefused as exc:
            raise Problem(
                422,
                f"webhook_url is not allowed: {exc}.",
                errors=[{"field": "webhook_url", "message": str(exc)}],
            ) from None
    with services.sessions() as session, session.begin():
        row = session.get(NotificationSettingsRow, user_id, with_for_update=True)
        if row is None:
            row = NotificationSettingsRow(user_id=user_id)
            session.add(row)
        row.webhook_url = str(body.webhook_url) if body.webhook_url else None
        row.email = body.email
        row.updated_at = datetime.now(UTC)
    return body


@router.get("/notifications")
def list_notifications(
    user_id: CurrentUser,
    services: ServicesDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NotificationOut]:
    stmt = select(NotificationRow).where(NotificationRow.user_id == user_id)
    if unread:
        stmt = stmt.where(NotificationRow.read_at.is_(None))
    stmt = stmt.order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc()).limit(limit)
    with services.sessions() as session:
        return [_out(row) for row in session.scalars(stmt)]


@router.patch("/notifications/{notification_id}")
def mark_notification(
    user_id: CurrentUser, notification_id: uuid.UUID, services: ServicesDep, body: ReadIn | None = None
) -> NotificationOut:
    read = True if body is None else body.read
    with services.sessions() as session, session.begin():
        row = session.get(NotificationRow, notification_id, with_for_update=True)
        if row is None or row.user_id != user_id:
            raise Problem(404, f"Notification {notification_id} does not exist for user {user_id}.")
        row.read_at = (row.read_at or datetime.now(UTC)) if read else None
        return _out(row)
