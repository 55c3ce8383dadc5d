"""A local server speaking the OpenAI Chat Completions HTTP protocol that scripts the model's tool calls: the
only fake in the chat tests (no model provider is reachable from here). Used by the agent and board tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.liveserver import LiveServer, live_server

Auth = Callable[[str], dict[str, str]]
ASK = "remind me to call mom every 2nd monday at 9"
ADD_TASK = {
    "title": "Call mom",
    "due_at": "2030-01-14T09:00:00+01:00",
    "timezone": "Europe/Berlin",
    "recurrence": "FREQ=MONTHLY;BYDAY=2MO",
    "reminders": ["PT15M"],
}


def text_of(content: Any) -> str:
    """A message's content: a string, or a list of content parts (both are the real protocol)."""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content)
    return str(content or "")


@dataclass
class FakeModel:
    """Answers /v1/chat/completions: a tool call for the first request of a turn, then text."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    def completion(self, message: dict[str, Any], finish: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    async def endpoint(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        last = body["messages"][-1]
        if last["role"] == "user" and ASK in str(last["content"]):
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add_task", "arguments": json.dumps(ADD_TASK)},
            }
            return JSONResponse(
                self.completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
            )
        if last["role"] == "tool":
            task = json.loads(text_of(last["content"]))
            text = f"Added {task.get('title', '?')} ({task.get('recurrence', '?')})."
            return JSONResponse(self.completion({"role": "assistant", "content": text}, "stop"))
        return JSONResponse(self.completion({"role": "assistant", "content": "You asked about mom."}, "stop"))


@pytest.fixture
def model() -> Iterator[tuple[FakeModel, LiveServer]]:
    fake = FakeModel()
    app = Starlette(routes=[Route("/v1/chat/completions", fake.endpoint, methods=["POST"])])
    with live_server(app) as server:
        yield fake, server
