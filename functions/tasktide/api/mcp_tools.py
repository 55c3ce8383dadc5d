"""The MCP task tools (official `mcp` SDK), answered by the REST routes themselves; mounted at `/mcp` by
:mod:`tasktide.api.mcp_server`, which imports this module at the first MCP request.

Consumes: tool calls the SDK has parsed from MCP JSON-RPC over Streamable HTTP (stateless, JSON
responses). Each tool call is an in-process ASGI request (`httpx.ASGITransport`) to `/api/{user}/tasks...`
with the caller's token, so the routes' validation, auth, transactions, outbox events and problem details
all apply unchanged.
Emits: tool results whose text is the REST response body (and `structuredContent` the same JSON; a list is
`{"tasks": [...], "next_cursor": ...}`); a REST problem becomes a tool error (`isError`) carrying the
RFC 9457 document.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import uuid
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field
from starlette.requests import Request

from tasktide.api.mcp_server import PATH, user_of
from tasktide.api.schemas import Priority, TaskFilters

Clearable = Literal["description", "due_at", "recurrence", "reminders", "tags"]
INSTRUCTIONS = (
    "Task tools of tasktide. Times are RFC 3339 (e.g. 2030-01-07T09:00:00+01:00) with an IANA timezone; "
    "recurrence is an RFC 5545 RRULE (e.g. FREQ=WEEKLY;BYDAY=MO); reminders are ISO 8601 durations "
    "before the due time (e.g. PT15M, P1D). Results are the REST API's task objects."
)


class TaskApi:
    """The REST API of the app that received the MCP request, called in-process over ASGI."""

    async def call(
        self,
        ctx: Context,
        method: str,
        suffix: str,
        *,
        body: Any = None,
        params: list[tuple[str, str]] | None = None,
    ) -> httpx.Response:
        headers = ctx.headers or {}
        authorization = headers.get("authorization", "")
        user = user_of(authorization)
        request = ctx.request_context.request
        app = request.scope["app"] if isinstance(request, Request) else None
        if app is None:
            raise RuntimeError("the MCP tools are served only over HTTP, mounted on the task API")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tasktide.internal") as client:
            return await client.request(
                method,
                f"/api/{user}/tasks{suffix}",
                json=body,
                params=tuple(params or ()),
                headers={"authorization": authorization},
            )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.text}


def result(response: httpx.Response, shape: Any = None) -> CallToolResult:
    """A REST answer as an MCP tool result; a problem document as a tool error."""
    if response.status_code >= 400:
        problem = _json(response)
        if not isinstance(problem, dict):
            problem = {"status": response.status_code, "detail": str(problem)}
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(problem))],
            structured_content=problem,
            is_error=True,
        )
    body = _json(response) if response.status_code != 204 else shape
    structured = body if isinstance(body, dict) else shape
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body))], structured_content=structured
    )


def _next_cursor(response: httpx.Response) -> str | None:
    link = response.links.get("next")
    if not link:
        return None
    values = parse_qs(urlsplit(link["url"]).query).get("cursor")
    return values[0] if values else None


def filter_signature() -> inspect.Signature:
    """`list_tasks(ctx, *, <every TaskFilters field>)`: the tool's arguments are the REST list's filters,
    with their types, defaults, limits and descriptions (one definition: `TaskFilters`)."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)]
    for name, field in TaskFilters.model_fields.items():
        annotation = Annotated[(field.annotation, *field.metadata, Field(description=field.description))]  # type: ignore[name-defined]
        keyword = inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(name, keyword, default=field.default, annotation=annotation))
    return inspect.Signature(params, return_annotation=CallToolResult)


@cache
def build_server(api: TaskApi | None = None) -> MCPServer[Any]:
    """The tools (built once per process: their schemas are costly); each app mounts its own transport."""
    api = api or TaskApi()
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)  # the SDK calls logging.basicConfig: never let it configure our logging
    try:
        server: MCPServer[Any] = MCPServer("tasktide", instructions=INSTRUCTIONS, version="0.1.0")
    finally:
        root.removeHandler(guard)
    idempotent = ToolAnnotations(idempotent_hint=True, destructive_hint=False)

    @server.tool(structured_output=False)
    async def add_task(
        ctx: Context,
        title: Annotated[str, Field(description="What to do", max_length=1000)],
        description: str = "",
        priority: Priority = "none",
        tags: list[str] | None = None,
        due_at: Annotated[str | None, Field(description="RFC 3339 due time")] = None,
        timezone: Annotated[str, Field(description="IANA zone the recurrence follows")] = "UTC",
        recurrence: Annotated[str | None, Field(description="RFC 5545 RRULE, e.g. FREQ=DAILY")] = None,
        reminders: Annotated[list[str] | None, Field(description="ISO 8601 durations before due")] = None,
    ) -> CallToolResult:
        """Create a task (POST /api/{user}/tasks); returns the created task."""
        body: dict[str, Any] = {
            "title": title,
            "description": description,
            "priority": priority,
            "tags": tags or [],
            "timezone": timezone,
            "reminders": reminders or [],
        }
        if due_at is not None:
            body["due_at"] = due_at
        if recurrence is not None:
            body["recurrence"] = recurrence
        return result(await api.call(ctx, "POST", "", body=body))

    async def list_tasks(ctx: Context, **arguments: Any) -> CallToolResult:
        """List tasks with the REST list's filters (GET /api/{user}/tasks).

        Structured result: {"tasks": [...], "next_cursor": ...}."""
        filters = TaskFilters.model_validate(arguments)
        response = await api.call(ctx, "GET", "", params=filters.query_params())
        if response.status_code >= 400:
            return result(response)
        tasks = response.json()
        shape = {"tasks": tasks, "next_cursor": _next_cursor(response)}
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(tasks))], structured_content=shape
        )

    list_tasks.__signature__ = filter_signature()  # type: ignore[attr-defined]
    server.tool(structured_output=False, annotations=ToolAnnotations(read_only_hint=True))(list_tasks)

    @server.tool(structured_output=False, annotations=idempotent)
    async def complete_task(
        ctx: Context,
        task_id: uuid.UUID,
        completed: Annotated[bool, Field(description="false reopens the task")] = True,
    ) -> CallToolResult:
        """Mark a task completed (or reopen it); a recurring task's next occurrence follows."""
        body = {"completed": completed}
        return result(await api.call(ctx, "PATCH", f"/{task_id}/complete", body=body))

    @server.tool(structured_output=False, annotations=idempotent)
    async def update_task(
        ctx: Context,
        task_id: uuid.UUID,
        title: str | None = None,
        description: str | None = None,
        priority: Priority | None = None,
        tags: list[str] | None = None,
        due_at: Annotated[str | None, Field(description="RFC 3339 due time")] = None,
        timezone: str | None = None,
        recurrence: Annotated[str | None, Field(description="RFC 5545 RRULE")] = None,
        reminders: list[str] | None = None,
        clear: Annotated[list[Clearable] | None, Field(description="Fields to empty")] = None,
    ) -> CallToolResult:
        """Change some fields of a task (a JSON merge patch); omitted fields keep their value."""
        given = {
            "title": title,
            "description": description,
            "priority": priority,
            "tags": tags,
            "due_at": due_at,
            "timezone": timezone,
            "recurrence": recurrence,
            "reminders": reminders,
        }
        patch: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        empties: dict[str, Any] = {"description": "", "tags": [], "reminders": []}
        for name in clear or []:
            patch[name] = empties.get(name)
        return result(await api.call(ctx, "PATCH", f"/{task_id}", body=patch))

    @server.tool(structured_output=False, annotations=ToolAnnotations(destructive_hint=True))
    async def delete_task(ctx: Context, task_id: uuid.UUID) -> CallToolResult:
        """Delete a task (this ends its series); returns {"deleted": task_id}."""
        return result(await api.call(ctx, "DELETE", f"/{task_id}"), {"deleted": str(task_id)})

    @server.tool(structured_output=False, annotations=ToolAnnotations(destructive_hint=True))
    async def skip_occurrence(ctx: Context, task_id: uuid.UUID) -> CallToolResult:
        """Skip this pending occurrence of a recurring task (POST /api/{user}/tasks/{id}/skip): it is removed
        and the series' next occurrence is created; a one-off or completed task is an error (409).

        Returns {"skipped": task, "next": task or null}."""
        return result(await api.call(ctx, "POST", f"/{task_id}/skip"))

    return server


_mounting = threading.Lock()


def session_manager() -> StreamableHTTPSessionManager:
    """A new Streamable HTTP session manager (stateless, JSON answers) over the tools, for one app."""
    with _mounting:  # one build of the tools; the SDK keeps the manager of its latest app on the server
        server = build_server()
        server.streamable_http_app(
            streamable_http_path=PATH,
            json_response=True,
            stateless_http=True,
            # Bearer tokens (not cookies) guard /mcp, so DNS rebinding gains an attacker nothing.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        return server.session_manager
