"""Router test fixtures: a real HTTP subscriber server (uvicorn in a thread) and fixture manifests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from tasktide.messaging import codec
from tasktide.router.manifests import Manifests, load_manifests
from tasktide.router.runtime import EventRuntime
from tests.testenv import require_env

from .support import Behaviour, RecordingSleep, Subscribers
from .support import Request as RawRequest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _app(subs: Subscribers) -> FastAPI:
    app = FastAPI()

    @app.post("/services/{name}")
    @app.post("/services/{name}/{rest:path}")
    async def service(name: str, request: Request) -> Response:
        raw = await request.body()
        event = codec.from_http(dict(request.headers), raw)
        with subs.lock:
            behaviour = subs.behaviours.get(name, Behaviour())
            subs.attempts[name] = attempt = subs.attempts.get(name, 0) + 1
            subs.received.setdefault(name, []).append(event)
            subs.requests.setdefault(name, []).append(RawRequest(dict(request.headers), raw))
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        failing = event.get("subject") in behaviour.fail_subjects
        if behaviour.always_fail or failing or attempt <= behaviour.fail_times:
            return Response(
                behaviour.fail_body, status_code=behaviour.fail_status, headers=behaviour.fail_headers
            )
        if behaviour.reply_type:
            reply = codec.new_event(behaviour.reply_type, f"/test/{name}", {"in_reply_to": event["id"]})
            encode = codec.to_structured_http if behaviour.reply_structured else codec.to_binary_http
            headers, body = encode(reply)
            return Response(body, status_code=200, headers=headers)
        return Response(behaviour.ok_body, status_code=behaviour.ok_status, headers=behaviour.ok_headers)

    return app


@pytest.fixture(scope="session")
def subscriber_server() -> Iterator[Subscribers]:
    port = _free_port()
    subs = Subscribers(base_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(_app(subs), host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("subscriber server did not start")
        time.sleep(0.02)
    yield subs
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def subscribers(subscriber_server: Subscribers) -> Subscribers:
    subscriber_server.reset()
    return subscriber_server


@pytest.fixture
def manifests() -> Manifests:
    return load_manifests(FIXTURES / "eventing", FIXTURES / "knative")


@pytest.fixture
def fake_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def runtime(
    subscribers: Subscribers, manifests: Manifests, fake_sleep: RecordingSleep
) -> AsyncIterator[EventRuntime]:
    rt = EventRuntime.create(subscribers.base_url, manifests=manifests, sleep=fake_sleep)
    await rt.start()
    yield rt
    await rt.stop()


@pytest.fixture(scope="module")
def bootstrap() -> str:
    """The real Kafka of `make test` (skipped locally without it, a failure under CI)."""
    return require_env("TASKTIDE_TEST_KAFKA")
