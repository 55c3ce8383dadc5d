"""Notification settings (`webhook_url`, `email`) and the in-app notifications list."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from tasktide.api.auth import CurrentUser
from tasktide.api.deps import DbCallsDep, NotificationsDep, ServicesDep
from tasktide.api.problems import Problem
from tasktide.app.ports import ChannelSettings, Notification
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


def _out(found: Notification) -> NotificationOut:
    return NotificationOut.model_validate({**dataclasses.asdict(found), "read": found.read_at is not None})


@router.get("/notification-settings")
async def get_settings(
    user_id: CurrentUser, notifications: NotificationsDep, db: DbCallsDep
) -> NotificationSettings:
    channels = await db.blocking(notifications.channels, user_id)
    return NotificationSettings.model_validate({"webhook_url": channels.webhook_url, "email": channels.email})


@router.put("/notification-settings")
async def put_settings(
    user_id: CurrentUser,
    body: NotificationSettings,
    services: ServicesDep,
    notifications: NotificationsDep,
    db: DbCallsDep,
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
    webhook_url = str(body.webhook_url) if body.webhook_url else None
    channels = ChannelSettings(webhook_url=webhook_url, email=body.email)
    await db.blocking(notifications.set_channels, user_id, channels)
    return body


@router.get("/notifications")
async def list_notifications(
    user_id: CurrentUser,
    notifications: NotificationsDep,
    db: DbCallsDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NotificationOut]:
    found = await db.blocking(notifications.recent, user_id, unread=unread, limit=limit)
    return [_out(n) for n in found]


@router.patch("/notifications/{notification_id}")
async def mark_notification(
    user_id: CurrentUser,
    notification_id: uuid.UUID,
    notifications: NotificationsDep,
    db: DbCallsDep,
    body: ReadIn | None = None,
) -> NotificationOut:
    read = True if body is None else body.read
    return _out(await db.blocking(notifications.mark, user_id, notification_id, read=read))
