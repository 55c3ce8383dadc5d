"""`/mcp`: the MCP task tools (Streamable HTTP, official `mcp` SDK) on the task API, behind the REST auth.

Consumes: MCP JSON-RPC over Streamable HTTP (`POST /mcp`, stateless, JSON responses) with
`Authorization: Bearer <JWT>`, the same token as the REST API (its `sub` is the user).
Emits: a missing or invalid token is a 401 problem (a token for another user's tasks, 403) before any MCP
processing; anything else is the SDK's answer over the tools of :mod:`tasktide.api.mcp_tools`.

The SDK is about a third of everything the API imports, so the API starts without it: the first request
past the gate imports the tools and builds the SDK's session manager in a worker thread (the event loop
keeps answering the REST API meanwhile), and a task of the app's lifespan runs that manager until shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import jwt
from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tasktide.api.auth import authorize
from tasktide.api.problems import Problem, problem_response

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

PATH = "/mcp"
log = logging.getLogger("tasktide.api.mcp")


def user_of(authorization: str) -> str:
    """The token's `sub` (the gate at /mcp has already verified the token)."""
    token = authorization.partition(" ")[2].strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims.get("sub", ""))


def _session_manager() -> StreamableHTTPSessionManager:
    from tasktide.api import mcp_tools

    return mcp_tools.session_manager()


class McpEndpoint:
    """`/mcp`: the bearer-token gate (the REST auth, as a 401/403 problem) in front of the SDK's handler,
    which the first request past the gate starts (:meth:`running` must be inside the app's lifespan)."""

    def __init__(self) -> None:
        self._manager: StreamableHTTPSessionManager | None = None
        self._wanted: anyio.Event | None = None
        self._ready: anyio.Event | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: a task that starts the SDK's session manager once a request wants it and
        runs it until shutdown (each lifespan its own manager: the SDK runs one only once)."""
        self._wanted, self._ready = anyio.Event(), anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._serve)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()  # leaves the manager's `run()` as its own shutdown does
        finally:
            self._manager, self._wanted, self._ready = None, None, None

    async def _serve(self) -> None:
        wanted, ready = self._wanted, self._ready
        assert wanted is not None and ready is not None
        await wanted.wait()
        try:
            manager = await anyio.to_thread.run_sync(_session_manager)
            async with manager.run():
                self._manager = manager
                ready.set()
                await anyio.sleep_forever()
        except Exception:  # a broken install or SDK: MCP answers 503, the REST API serves on
            log.exception("the MCP tools could not be loaded or stopped serving")
            self._manager = None
        finally:
            ready.set()

    async def _started(self) -> StreamableHTTPSessionManager | None:
        wanted, ready = self._wanted, self._ready
        if wanted is None or ready is None:
            return None  # outside the app's lifespan (served without one): nothing runs the SDK
        wanted.set()
        await ready.wait()
        return self._manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            authorization = request.headers.get("authorization", "")
            if not authorization.lower().startswith("bearer "):
                detail = "Send 'Authorization: Bearer <token>'; mint one with `tasktide token USER`."
                raise Problem(401, detail)
            try:
                user = user_of(authorization)
            except jwt.InvalidTokenError as exc:
                raise Problem(401, f"The token is invalid: {exc}.") from None
            authorize(request, user)
            manager = self._manager or await self._started()
            if manager is None:
                raise Problem(503, "The MCP tools are unavailable in this process; the REST API serves.")
        except Problem as problem:
            headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
            await problem_response(problem.status, problem.detail, headers=headers)(scope, receive, send)
            return
        await manager.handle_request(scope, receive, send)


def install(app: FastAPI) -> McpEndpoint:
    """Serve the task tools at `/mcp` on `app`; the SDK's session manager runs inside the app's lifespan,
    from the first MCP request on."""
    endpoint = McpEndpoint()
    app.router.routes.append(Route(PATH, endpoint, methods=["GET", "POST", "DELETE"]))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        async with endpoint.running(), inner(target) as state:
            yield state

    app.router.lifespan_context = lifespan
    return endpoint
