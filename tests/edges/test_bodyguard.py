"""Body guards shared by the API and the function servers: a whole-body deadline (408, issue 12 finding 5),
size (413) and JSON depth (400) limits, checked before the wrapped app (a function's thread) runs."""

from __future__ import annotations

import asyncio
import json

from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from tasktide.edges.bodyguard import BufferedBody, too_deep
from tasktide.functions._server import create_function_app, guarded
from tasktide.settings import Settings


def test_too_deep_counts_nesting_outside_strings() -> None:
    assert not too_deep(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 3)
    assert too_deep(b"[[[[1]]]]", 3)
    assert not too_deep(b"[[[1]]]", 3)
    assert not too_deep(b"[1],[2],[3],[4],[5]", 1)


def test_buffered_body_slow_body_answers_408_before_the_app_runs() -> None:
    called: list[bool] = []

    async def app(_scope: Scope, _receive: Receive, _send: Send) -> None:
        called.append(True)

    sent: list[Message] = []
    stalled = asyncio.Event()

    async def receive() -> Message:
        if not sent and not stalled.is_set():
            stalled.set()
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.Event().wait()  # the client never sends the rest
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    guard = BufferedBody(app, timeout=0.2, max_bytes=1000, max_depth=8)
    asyncio.run(guard({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send))
    assert called == []
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["status"] == 408


def test_function_server_deep_json_event_answers_400() -> None:
    app = guarded(create_function_app("audit"), Settings(max_json_depth=16))
    with TestClient(app) as client:  # type: ignore[arg-type]
        event = {"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "data": {}}
        nested: object = 1
        for _ in range(100):
            nested = [nested]
        event["data"] = {"x": nested}
        response = client.post(
            "/", content=json.dumps(event), headers={"content-type": "application/cloudevents+json"}
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        deep = "[" * 100_000 + "]" * 100_000
        response = client.post("/", content=deep, headers={"content-type": "application/cloudevents+json"})
        assert response.status_code in (400, 413)
