"""`/api/{user}/chat` on the API of a cluster: forwarded to the `tasktide-agent` Service by Dapr service
invocation, so the board keeps talking to one origin while the agent scales on its own (to zero when idle).

Consumes: the board's `POST {"message", "conversation_id"?}` and `GET` (is a model configured?) with the
user's JWT, checked here first so nothing unauthenticated reaches the agent. Emits: the same request to
`http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/invoke/$TASKTIDE_AGENT_APP_ID/method/api/{user}/chat` (Authorization,
traceparent and the sidecar's `dapr-api-token` passed on); the agent's answer (status, body, content type)
unchanged, over one keep-alive client per app and event loop (closed at shutdown). On a cluster
`tasktide-agent` is a Dapr HTTPEndpoint (dapr/httpendpoint-agent.yaml) naming the agent's Knative URL, so
the call goes through the Knative activator and wakes a revision scaled to zero (sidecar-to-sidecar
invocation would find no pod). Problems: 502 when the sidecar or the agent cannot be
reached (Dapr's own error bodies never reach the browser), 503 without a sidecar.

`install(app, settings)` picks this forwarder when `TASKTIDE_AGENT_APP_ID` is set, else the in-process agent
(`tasktide.agent.chat`), as in the embedded default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response

from tasktide.agent import chat
from tasktide.api.auth import CurrentUser
from tasktide.api.deps import ServicesDep
from tasktide.api.problems import Problem
from tasktide.services import Services
from tasktide.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/{user_id}", tags=["chat"])
PASSED_ON = ("authorization", "traceparent", "tracestate")


def _client(request: Request, timeout: float) -> httpx.AsyncClient:
    """The app's client to the sidecar (one keep-alive pool a worker), made on its event loop: a client is
    bound to the loop it first ran on, so another loop (a test's second server) gets its own."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = getattr(
        request.app.state, "agent_client", None
    )
    if held is None or held[0] is not loop:
        held = (loop, httpx.AsyncClient(timeout=timeout))
        request.app.state.agent_client = held
    return held[1]


async def _close_client(app: FastAPI) -> None:
    held = getattr(app.state, "agent_client", None)
    if held is not None and held[0] is asyncio.get_running_loop():
        app.state.agent_client = None
        await held[1].aclose()


def invoke_url(settings: Settings, user_id: str) -> str:
    if not settings.dapr_http_port:
        detail = "Chat goes to the agent through the Dapr sidecar, but DAPR_HTTP_PORT is not set."
        raise Problem(503, detail)
    base = f"http://127.0.0.1:{settings.dapr_http_port}/v1.0/invoke/{settings.agent_app_id}/method"
    return f"{base}/api/{user_id}/chat"


async def forward(request: Request, services: Services, user_id: str, body: bytes | None) -> Response:
    settings = services.settings
    url = invoke_url(settings, user_id)
    headers = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
    headers.update(chat.dapr_headers(settings))
    if body is not None:
        headers["content-type"] = "application/json"
    try:
        client = _client(request, settings.agent_timeout)
        answer = await client.request(request.method, url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("chat forward to %s failed: %s", settings.agent_app_id, type(exc).__name__)
        detail = f"The chat agent ({settings.agent_app_id}) could not be reached: {type(exc).__name__}."
        raise Problem(502, detail) from None
    content_type = answer.headers.get("content-type", "application/json")
    if answer.status_code >= 500 and not content_type.startswith("application/problem+json"):
        # daprd's own error ({"errorCode": "ERR_DIRECT_INVOKE", ...}): no agent answered
        log.warning("chat forward to %s: sidecar answered %s", settings.agent_app_id, answer.text[:300])
        detail = f"The chat agent ({settings.agent_app_id}) did not answer (Dapr {answer.status_code})."
        raise Problem(502, detail)
    return Response(answer.content, status_code=answer.status_code, media_type=content_type)


@router.get("/chat", response_model=chat.ChatStatus)
async def chat_status(user_id: CurrentUser, request: Request, services: ServicesDep) -> Response:
    return await forward(request, services, user_id, None)


@router.post("/chat", response_model=chat.ChatOut)
async def chat_turn(
    user_id: CurrentUser, body: chat.ChatIn, request: Request, services: ServicesDep
) -> Response:
    return await forward(request, services, user_id, body.model_dump_json(exclude_none=True).encode())


def install(app: FastAPI, settings: Settings) -> None:
    """The chat route of the API: forwarded to the agent Service when one is named, else in-process."""
    if not settings.agent_app_id:
        app.include_router(chat.router)
        return
    app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        try:
            async with inner(target) as state:
                yield state
        finally:
            await _close_client(app)

    app.router.lifespan_context = lifespan
