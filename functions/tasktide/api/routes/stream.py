"""`GET /api/{user_id}/stream`: Server-Sent Events of the user's task changes (`Last-Event-ID` resumes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette.sse import EventSourceResponse

from tasktide.api.auth import CurrentUser
from tasktide.messaging.stream import StreamHub

router = APIRouter(prefix="/api/{user_id}", tags=["stream"])


@router.get("/stream", response_class=EventSourceResponse)
async def stream(
    user_id: CurrentUser,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> EventSourceResponse:
    hub: StreamHub = request.app.state.hub

    async def updates() -> AsyncIterator[dict[str, str]]:
        async for update in hub.subscribe(user_id, last_event_id):
            yield {"id": update.id, "event": update.type, "data": json.dumps(update.data)}

    return EventSourceResponse(updates(), ping=15)
