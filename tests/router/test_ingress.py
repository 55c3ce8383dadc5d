"""Tests for the broker ingress router: binary/structured accepted, malformed and unknown rejected."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tasktide.messaging import codec
from tasktide.router.runtime import EventRuntime

from .support import Subscribers

pytestmark = pytest.mark.anyio


@pytest.fixture
async def ingress(runtime: EventRuntime) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(runtime.ingress_router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        yield client


def _task_event() -> codec.CloudEvent:
    return codec.new_event("com.tasktide.task.created", "/tasktide/api", {"id": "t1"}, subject="t1")


async def test_ingress_binary_event_accepted_and_delivered(
    ingress: httpx.AsyncClient, runtime: EventRuntime, subscribers: Subscribers
) -> None:
    event = _task_event()
    headers, body = codec.to_binary_http(event)
    response = await ingress.post("/default/default", headers=headers, content=body)
    assert response.status_code == 202
    await runtime.drain()
    assert [e["id"] for e in subscribers.events("audit")] == [event["id"]]


async def test_ingress_structured_event_accepted_and_delivered(
    ingress: httpx.AsyncClient, runtime: EventRuntime, subscribers: Subscribers
) -> None:
    event = _task_event()
    headers, body = codec.to_structured_http(event)
    response = await ingress.post("/default/default", headers=headers, content=body)
    assert response.status_code == 202
    await runtime.drain()
    (received,) = subscribers.events("audit")
    assert codec.event_data(received) == {"id": "t1"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "application/json"}, b'{"hello": "world"}'),
        ({"ce-specversion": "1.0", "ce-type": "t", "ce-source": "/s"}, b"{}"),
        ({"content-type": "application/cloudevents+json"}, b"{broken"),
        ({"ce-specversion": "2.0", "ce-id": "1", "ce-type": "t", "ce-source": "/s"}, b"{}"),
    ],
)
async def test_ingress_malformed_event_rejected_with_problem_json(
    ingress: httpx.AsyncClient, subscribers: Subscribers, headers: dict[str, str], body: bytes
) -> None:
    response = await ingress.post("/default/default", headers=headers, content=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert problem["title"] == "Invalid CloudEvent"
    assert problem["type"] and problem["detail"]


async def test_ingress_unknown_broker_returns_404_problem(ingress: httpx.AsyncClient) -> None:
    headers, body = codec.to_binary_http(_task_event())
    response = await ingress.post("/default/nope", headers=headers, content=body)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "nope" in response.json()["detail"]
