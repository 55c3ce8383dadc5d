"""The FastAPI application: routes, RFC 9457 errors, body-size, body-deadline and JSON-depth limits, RED
metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktide.api import board, mcp_server, problems
from tasktide.api.docs import install_docs
from tasktide.api.idempotency import IdempotencyKeys
from tasktide.api.routes import health, history, notifications, stream, tasks
from tasktide.edges.bodyguard import BufferedBody
from tasktide.messaging.stream import StreamHub
from tasktide.observability.red import RedMetrics
from tasktide.services import Services

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class RequestGuard:
    """Answers 400 for NUL characters in the URL and 413 for bodies over the limit (announced or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b"") or "\x00" in scope.get("path", ""):
            detail = "The URL contains a NUL character (%00), which no field accepts."
            await problems.problem_response(400, detail)(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body exceeds {self.limit} bytes."
        await problems.problem_response(413, detail)(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """An HTTPException so FastAPI's body reader re-raises it instead of answering 400."""

    def __init__(self) -> None:
        super().__init__(413)


def _is_api_request(scope: Scope) -> bool:
    """Functions and the broker ingress mounted by `tasktide dev` count themselves."""
    if str(scope.get("path", "")).startswith("/services/"):
        return False
    return getattr(scope.get("route"), "path", None) != "/{namespace}/{broker_name}"


def create_app(services: Services, hub: StreamHub | None = None, lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        redirect_slashes=False,  # a trailing slash gets a 404 problem saying so, not an empty 307
        docs_url=None,  # served from local files by install_docs: no CDN
        redoc_url=None,
        title="tasktide",
        version="0.1.0",
        description="Tasks with priorities, tags, due dates, recurrence and reminders.",
    )
    app.state.services = services
    app.state.hub = hub or StreamHub()
    problems.install(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(history.router)
    app.include_router(notifications.router)
    app.include_router(stream.router)
    app.include_router(problems.misdirected)
    mcp_server.install(app)
    board.install(app)
    problems.document(app)  # every route's possible problems in the OpenAPI

    settings = services.settings
    app.add_middleware(
        IdempotencyKeys
    )  # inside the body guard: Idempotency-Key on POST/PATCH (api/idempotency)
    app.add_middleware(
        BufferedBody,
        timeout=settings.body_read_timeout,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
    )
    app.add_middleware(RedMetrics, function="api", counted=_is_api_request)
    app.add_middleware(RequestGuard, limit=services.settings.max_body_bytes)
    return app
