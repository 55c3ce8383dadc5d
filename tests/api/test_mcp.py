"""The MCP task tools at /mcp, driven by the official SDK's client over real HTTP (uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent
from starlette.testclient import TestClient

from tasktide.api import mcp_server
from tasktide.api.app import create_app
from tasktide.api.schemas import TaskFilters
from tasktide.services import Services
from tests.liveserver import LiveServer, live_server

Auth = Callable[[str], dict[str, str]]


@pytest.fixture
def server(services: Services) -> Iterator[LiveServer]:
    with live_server(create_app(services)) as live:
        yield live


def call(
    server: LiveServer, headers: dict[str, str], *calls: tuple[str, dict[str, Any]]
) -> list[CallToolResult]:
    """Open one MCP client session and make the tool calls in order."""

    async def run() -> list[CallToolResult]:
        http = httpx2.AsyncClient(headers=headers, timeout=30)
        async with http, Client(streamable_http_client(f"{server.base_url}/mcp", http_client=http)) as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]

    return asyncio.run(run())


def text_json(result: CallToolResult) -> Any:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return json.loads(block.text)


def test_mcp_tools_list_names_the_task_tools(server: LiveServer, auth: Auth) -> None:
    async def run() -> list[str]:
        http = httpx2.AsyncClient(headers=auth("alice"))
        async with http, Client(streamable_http_client(f"{server.base_url}/mcp", http_client=http)) as client:
            tools = await client.list_tools()
            return sorted(t.name for t in tools.tools)

    names = ["add_task", "complete_task", "delete_task", "list_tasks", "skip_occurrence", "update_task"]
    assert asyncio.run(run()) == names


def test_mcp_list_tasks_schema_is_the_rest_filter_model(server: LiveServer, auth: Auth) -> None:
    async def run() -> dict[str, Any]:
        http = httpx2.AsyncClient(headers=auth("alice"))
        async with http, Client(streamable_http_client(f"{server.base_url}/mcp", http_client=http)) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return tools["list_tasks"].input_schema

    schema = asyncio.run(run())
    rest = TaskFilters.model_json_schema()
    assert set(schema["properties"]) == set(rest["properties"])
    assert schema["properties"]["limit"]["maximum"] == rest["properties"]["limit"]["maximum"] == 200
    assert schema["properties"]["sort"]["enum"] == rest["properties"]["sort"]["enum"]
    assert schema.get("required", []) == []


def test_mcp_add_task_created_task_same_as_rest(server: LiveServer, auth: Auth) -> None:
    arguments = {
        "title": "Water the plants",
        "priority": "high",
        "tags": ["home"],
        "due_at": "2030-01-07T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO",
        "reminders": ["PT15M"],
    }
    (created,) = call(server, auth("alice"), ("add_task", arguments))
    assert not created.is_error
    task = text_json(created)
    assert created.structured_content == task
    rest = httpx.get(f"{server.base_url}/api/alice/tasks/{task['id']}", headers=auth("alice"))
    assert rest.status_code == 200
    assert rest.json() == task
    assert (task["priority"], task["tags"], task["recurrence"]) == ("high", ["home"], "FREQ=WEEKLY;BYDAY=MO")


def test_mcp_list_tasks_filters_same_as_rest_list(server: LiveServer, auth: Auth) -> None:
    for title, priority, tags in (("a", "high", ["home"]), ("b", "low", ["home"]), ("c", "high", ["work"])):
        body = {"title": title, "priority": priority, "tags": tags}
        assert httpx.post(f"{server.base_url}/api/alice/tasks", json=body, headers=auth("alice")).is_success
    filters = {"priority": ["high"], "tag": ["home"], "sort": "-title"}
    first_page, rest_of_it = call(
        server,
        auth("alice"),
        ("list_tasks", {"sort": "title", "limit": 2}),
        ("list_tasks", filters),
    )
    params = {"priority": "high", "tag": "home"}
    rest = httpx.get(f"{server.base_url}/api/alice/tasks", params=params, headers=auth("alice"))
    assert text_json(rest_of_it) == rest.json()
    assert [t["title"] for t in text_json(rest_of_it)] == ["a"]
    page = first_page.structured_content
    assert page is not None
    assert [t["title"] for t in page["tasks"]] == ["a", "b"]
    follow = {"sort": "title", "limit": 2, "cursor": page["next_cursor"]}
    (second,) = call(server, auth("alice"), ("list_tasks", follow))
    assert [t["title"] for t in text_json(second)] == ["c"]


def test_mcp_complete_update_delete_change_the_rest_task(server: LiveServer, auth: Auth) -> None:
    (created,) = call(server, auth("alice"), ("add_task", {"title": "Draft", "tags": ["x"], "reminders": []}))
    task_id = text_json(created)["id"]
    updated, completed, reopened, deleted = call(
        server,
        auth("alice"),
        ("update_task", {"task_id": task_id, "title": "Final", "priority": "medium", "clear": ["tags"]}),
        ("complete_task", {"task_id": task_id}),
        ("complete_task", {"task_id": task_id, "completed": False}),
        ("delete_task", {"task_id": task_id}),
    )
    assert (text_json(updated)["title"], text_json(updated)["tags"]) == ("Final", [])
    assert text_json(completed)["status"] == "completed"
    assert text_json(reopened)["status"] == "pending"
    assert deleted.structured_content == {"deleted": task_id}
    gone = httpx.get(f"{server.base_url}/api/alice/tasks/{task_id}", headers=auth("alice"))
    assert gone.status_code == 404


def test_mcp_invalid_fields_problem_becomes_tool_error(server: LiveServer, auth: Auth) -> None:
    (result,) = call(server, auth("alice"), ("add_task", {"title": "x", "recurrence": "FREQ=SOMETIMES"}))
    assert result.is_error
    problem = text_json(result)
    assert problem["status"] == 422
    assert problem["title"] == "Unprocessable Content"
    assert any(e["field"] == "recurrence" for e in problem["errors"])
    assert result.structured_content == problem


def test_mcp_other_users_task_not_found_tool_error(server: LiveServer, auth: Auth) -> None:
    (created,) = call(server, auth("alice"), ("add_task", {"title": "mine"}))
    (result,) = call(server, auth("bob"), ("complete_task", {"task_id": text_json(created)["id"]}))
    assert result.is_error
    assert text_json(result)["status"] == 404


def test_mcp_skip_occurrence_next_one_same_as_rest(server: LiveServer, auth: Auth) -> None:
    weekly = {"title": "Stand-up", "due_at": "2030-01-07T09:00:00+01:00", "timezone": "Europe/Berlin"}
    (created,) = call(server, auth("alice"), ("add_task", {**weekly, "recurrence": "FREQ=WEEKLY;BYDAY=MO"}))
    task_id = text_json(created)["id"]
    (skipped,) = call(server, auth("alice"), ("skip_occurrence", {"task_id": task_id}))
    assert not skipped.is_error
    shape = text_json(skipped)
    assert skipped.structured_content == shape
    assert shape["skipped"]["id"] == task_id
    assert shape["next"]["due_at"] == "2030-01-14T08:00:00Z"
    rest = httpx.get(f"{server.base_url}/api/alice/tasks/{shape['next']['id']}", headers=auth("alice"))
    assert rest.json() == shape["next"]
    gone = httpx.get(f"{server.base_url}/api/alice/tasks/{task_id}", headers=auth("alice"))
    assert gone.status_code == 404


def test_mcp_skip_occurrence_one_off_task_conflict_tool_error(server: LiveServer, auth: Auth) -> None:
    (created,) = call(server, auth("alice"), ("add_task", {"title": "once"}))
    (result,) = call(server, auth("alice"), ("skip_occurrence", {"task_id": text_json(created)["id"]}))
    assert result.is_error
    problem = text_json(result)
    assert problem["status"] == 409
    assert result.structured_content == problem


def test_mcp_list_tasks_invalid_due_from_problem_tool_error(server: LiveServer, auth: Auth) -> None:
    (result,) = call(server, auth("alice"), ("list_tasks", {"due_from": "2030-01-07T09:00:00"}))
    assert result.is_error
    assert text_json(result)["status"] == 422


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic YWxpY2U6eA=="}],
    ids=["none", "garbage", "basic"],
)
def test_mcp_without_valid_token_http_401_problem(server: LiveServer, headers: dict[str, str]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx.post(f"{server.base_url}/mcp", json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"


LAZY_PROBE = """
import sys
from tasktide.api.app import create_app
from tasktide.api.auth import encode_token
from tasktide.services import Services
from tasktide.settings import get_settings
from starlette.testclient import TestClient

def sdk():
    return sorted(m for m in sys.modules if m.split(".")[0] in ("mcp", "mcp_types"))

app = create_app(Services.build(get_settings()))
print("built", sdk())
with TestClient(app) as client:
    client.get("/healthz")
    print("served", sdk())
    token = encode_token("alice", get_settings().jwt_secret)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    response = client.post("/mcp", json=body, headers=headers)
    print("mcp", response.status_code, sorted(t["name"] for t in response.json()["result"]["tools"]))
    print("loaded", "mcp.server.mcpserver" in sdk())
"""


def test_mcp_sdk_not_imported_until_the_first_mcp_request(database_url: str) -> None:
    """The SDK is about a third of the API's imports: the API builds and serves without it."""
    env = {**os.environ, "TASKTIDE_DATABASE_URL": database_url, "TASKTIDE_JWT_SECRET": "s" * 32}
    done = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "built []" in lines
    assert "served []" in lines
    tools = "['add_task', 'complete_task', 'delete_task', 'list_tasks', 'skip_occurrence', 'update_task']"
    assert f"mcp 200 {tools}" in lines
    assert "loaded True" in lines


def test_mcp_tools_unloadable_mcp_503_problem_and_rest_still_serves(
    services: Services, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise ImportError("no mcp here")

    monkeypatch.setattr(mcp_server, "_session_manager", broken)
    with TestClient(create_app(services)) as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        response = client.post("/mcp", json=body, headers=auth("alice"))
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert client.get("/api/alice/tasks", headers=auth("alice")).status_code == 200


TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def test_mcp_app_started_twice_serves_the_tools_each_time(services: Services, auth: Auth) -> None:
    app = create_app(services)
    for _ in range(2):  # the SDK runs a session manager only once: each lifespan loads its own
        with TestClient(app) as client:
            response = client.post("/mcp", json=TOOLS_LIST, headers=auth("alice"))
            assert response.status_code == 200, response.text
            assert len(response.json()["result"]["tools"]) == 6


def test_mcp_served_without_the_lifespan_503_problem(services: Services, auth: Auth) -> None:
    client = TestClient(create_app(services))  # no `with`: the app's lifespan never runs
    response = client.post("/mcp", json=TOOLS_LIST, headers=auth("alice"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


def test_mcp_first_requests_together_load_the_sdk_once_and_all_answer(
    services: Services, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []
    load = mcp_server._session_manager

    def counted() -> Any:
        loads.append(1)
        return load()

    monkeypatch.setattr(mcp_server, "_session_manager", counted)
    with TestClient(create_app(services)) as client, ThreadPoolExecutor(4) as pool:
        post = lambda _: client.post("/mcp", json=TOOLS_LIST, headers=auth("alice")).status_code  # noqa: E731
        assert list(pool.map(post, range(4))) == [200] * 4
    assert loads == [1]
