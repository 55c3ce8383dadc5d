"""The FastAPI application: routes, RFC 9457 errors, body-size limit and RED metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktide import metrics
from tasktide.api import problems
from tasktide.api.routes import health, history, notifications, stream, tasks
from tasktide.services import Services
from tasktide.stream import StreamHub

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


class _TooLarge(Exception):
    pass


def _is_api_request(request: Request) -> bool:
    route = request.scope.get("route")
    if request.url.path.startswith("/services/"):
        return False
    return getattr(route, "path", None) != "/{namespace}/{broker_name}"


def create_app(services: Services, hub: StreamHub | None = None, lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="tasktide",
        version="0.1.0",
        description="Tasks with priorities, tags, due dates, recurrence and reminders.",
    )
    app.state.services = services
    app.state.hub = hub or StreamHub()
    problems.install(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(history.router)
    app.include_router(notifications.router)
    app.include_router(stream.router)

    @app.middleware("http")
    async def red_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        if not _is_api_request(request):
            return response  # functions and the broker ingress mounted by `tasktide dev` count themselves
        metrics.REQUEST_DURATION.labels("api").observe(time.perf_counter() - start)
        metrics.REQUESTS.labels("api", str(response.status_code)).inc()
        if response.status_code >= 500:
            metrics.REQUEST_ERRORS.labels("api").inc()
        return response

    app.add_middleware(RequestGuard, limit=services.settings.max_body_bytes)
    return app
