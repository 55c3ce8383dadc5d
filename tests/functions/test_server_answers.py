"""How a function server answers, as the Knative Kafka Broker's dispatcher needs it.

Every case runs against the three ways the same app is served: in-process (Flask), as `tasktide dev` hosts
it (a2wsgi at `/services/<name>`), and as the container runs it (`tasktide serve` with `FUNCTION_TARGET`,
gunicorn, a real process). Handled: 204 and an empty body (functions-framework's `200 text/html OK` is a
failure on a real broker). Bad input: a 4xx `application/problem+json`, never a 500.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tasktide.db.migrate import upgrade
from tasktide.domain.tasks import new_task
from tasktide.entrypoints.dev import function_app
from tasktide.functions import _kit
from tasktide.functions._server import MAX_EVENT_BYTES, PROBLEM_JSON, create_function_app
from tasktide.messaging import codec
from tasktide.messaging.events import TASK_CREATED, task_envelope
from tasktide.observability import metrics
from tasktide.services import Services
from tasktide.settings import Settings
from tests.entrypoints.test_serve import free_port, serve, wait_until_up

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def task_event(**data_overrides: object) -> dict[str, object]:
    task = new_task("alice", {"title": "served"}, now=datetime.now(UTC), task_id=uuid.uuid4())
    doc: dict[str, object] = task_envelope(TASK_CREATED, task).to_json()
    if data_overrides:
        doc["data"] = {**doc["data"], **data_overrides}  # type: ignore[dict-item]
    return doc


def binary(doc: dict[str, object]) -> tuple[dict[str, str], bytes]:
    return codec.to_binary_http(codec.from_dict(doc))


STRUCTURED = {"content-type": codec.STRUCTURED_CONTENT_TYPE}


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Bad:
    """A request a function can never handle, and the status it must get."""

    name: str
    status: int
    headers: dict[str, str]
    body: bytes


def bad_inputs() -> list[Bad]:
    ok = task_event()
    headers, body = binary(ok)
    return [
        Bad("batch", 415, {"content-type": "application/cloudevents-batch+json"}, json.dumps([ok]).encode()),
        Bad("null-id", 400, STRUCTURED, json.dumps({**ok, "id": None}).encode()),
        Bad("array-body", 400, STRUCTURED, json.dumps([ok]).encode()),
        Bad("deep-structured", 400, STRUCTURED, b'{"specversion":"1.0","data":' + deep(20_000) + b"}"),
        Bad("deep-binary-data", 400, headers, deep(20_000)),
        Bad("not-a-cloudevent", 400, {"content-type": "application/json"}, body),
        Bad("uppercase-attribute", 400, STRUCTURED, json.dumps({**ok, "Extra": "x"}).encode()),
        Bad("bad-time", 400, STRUCTURED, json.dumps({**ok, "time": "yesterday"}).encode()),
        Bad("model-invalid", 400, headers, json.dumps({"task": {"id": "not-a-uuid"}}).encode()),
        Bad("data-none", 400, headers, b""),
        Bad("wrong-type", 400, {**headers, "ce-type": "com.example.other"}, body),
        Bad("too-big", 413, headers, b'"' + b"x" * MAX_EVENT_BYTES + b'"'),
    ]


BAD = bad_inputs()

Post = Callable[..., httpx.Response]


def audit_rows(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT type, task_id FROM audit_log")).all()]
    engine.dispose()
    return rows  # type: ignore[return-value]


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    doc = response.json()
    assert doc["status"] == status and doc["title"] and doc["detail"]


def assert_handled(response: httpx.Response) -> None:
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert "content-type" not in response.headers or not response.content


# -- the three servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fn') / 'fn.db'}"
    upgrade(url)
    return url


@pytest.fixture
def fn_services(db_url: str) -> Iterator[Services]:
    """The container the in-process and dev-mounted function apps are made with."""
    services = Services.build(Settings(database_url=db_url))
    yield services
    services.engine.dispose()


@pytest.fixture(scope="module")
def served(db_url: str) -> Iterator[str]:
    """`tasktide serve` with FUNCTION_TARGET=audit: the container entrypoint, a real gunicorn process."""
    port = free_port()
    proc = serve({"FUNCTION_TARGET": "audit", "PORT": str(port), "TASKTIDE_DATABASE_URL": db_url})
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
async def dev_client(fn_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The function as `tasktide dev` mounts it (a2wsgi), over ASGI."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    settings = Settings(database_url=fn_services.settings.database_url)
    route = Route(
        "/services/tasktide-audit", function_app("audit", settings, fn_services), methods=["GET", "POST"]
    )
    app = Starlette(routes=[route])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dev") as client:
        yield client


# -- in-process ------------------------------------------------------------------------------------------


def flask_post(services: Services, headers: dict[str, str], body: bytes) -> httpx.Response:
    client = create_function_app("audit", services=services).test_client()
    result = client.post("/", headers=headers, data=body)
    return httpx.Response(result.status_code, headers=dict(result.headers), content=result.get_data())


def test_fnserver_handled_event_inprocess_answers_204_empty(fn_services: Services, db_url: str) -> None:
    doc = task_event()
    assert_handled(flask_post(fn_services, STRUCTURED, json.dumps(doc).encode()))
    headers, body = binary(task_event())
    assert_handled(flask_post(fn_services, headers, body))


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_fnserver_bad_input_inprocess_answers_4xx_problem(bad: Bad, fn_services: Services) -> None:
    assert_problem(flask_post(fn_services, bad.headers, bad.body), bad.status)


def test_fnserver_model_invalid_data_is_counted_invalid(fn_services: Services) -> None:
    def invalid() -> float:
        labels = {"function": "audit", "type": TASK_CREATED, "outcome": "invalid"}
        return metrics.REGISTRY.get_sample_value("tasktide_events_consumed_total", labels) or 0.0

    before = invalid()
    headers, _ = binary(task_event())
    assert_problem(flask_post(fn_services, headers, b'{"task": null}'), 400)
    assert invalid() == before + 1


def test_fnserver_transient_failure_answers_500_problem(
    fn_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Services:
        raise RuntimeError("database is down")

    monkeypatch.setattr(_kit, "audit_unit_of_work", broken)
    headers, body = binary(task_event())
    response = flask_post(fn_services, headers, body)
    assert_problem(response, 500)
    assert "database is down" not in response.text


def test_fnserver_get_answers_405_problem(fn_services: Services) -> None:
    client = create_function_app("audit", services=fn_services).test_client()
    result = client.get("/")
    assert result.status_code == 405
    assert result.headers["content-type"].startswith(PROBLEM_JSON)


def test_fnserver_function_returning_cloudevent_replies_binary(tmp_path: Path) -> None:
    source = tmp_path / "echo.py"
    source.write_text(
        "import functions_framework\n"
        "from tasktide.messaging import codec\n\n"
        "@functions_framework.cloud_event\n"
        "def echo(event):\n"
        "    return codec.new_event('test.echoed', '/echo', {'of': event['id']}, id='reply-1')\n"
    )
    client = create_function_app("echo", str(source)).test_client()
    headers, body = binary(task_event())
    result = client.post("/", headers=headers, data=body)
    assert result.status_code == 200
    reply = codec.from_http(dict(result.headers), result.get_data())
    assert (reply["type"], reply["id"]) == ("test.echoed", "reply-1")
    assert codec.event_data(reply) == {"of": headers["ce-id"]}


# -- as `tasktide dev` hosts it ----------------------------------------------------------------------------


async def test_fnserver_handled_event_dev_answers_204_empty(dev_client: httpx.AsyncClient) -> None:
    headers, body = binary(task_event())
    assert_handled(await dev_client.post("/services/tasktide-audit", headers=headers, content=body))


async def test_fnserver_chunked_body_dev_reaches_function(dev_client: httpx.AsyncClient, db_url: str) -> None:
    doc = task_event()
    headers, body = binary(doc)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    response = await dev_client.post("/services/tasktide-audit", headers=headers, content=chunks())
    assert_handled(response)
    assert (TASK_CREATED, doc["subject"]) in audit_rows(db_url)


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
async def test_fnserver_bad_input_dev_answers_4xx_problem(bad: Bad, dev_client: httpx.AsyncClient) -> None:
    response = await dev_client.post("/services/tasktide-audit", headers=bad.headers, content=bad.body)
    assert_problem(response, bad.status)


# -- as the container runs it: `tasktide serve` -------------------------------------------------------------


def test_fnserver_handled_event_serve_answers_204_empty(served: str, db_url: str) -> None:
    doc = task_event()
    assert_handled(httpx.post(served, content=json.dumps(doc), headers=STRUCTURED, timeout=10))
    headers, body = binary(task_event())
    assert_handled(httpx.post(served, content=body, headers=headers, timeout=10))
    assert (TASK_CREATED, doc["subject"]) in audit_rows(db_url)


def test_fnserver_chunked_body_serve_reaches_function(served: str, db_url: str) -> None:
    doc = task_event()
    headers, body = binary(doc)
    response = httpx.post(served, content=iter([body[:10], body[10:]]), headers=headers, timeout=10)
    assert_handled(response)
    assert (TASK_CREATED, doc["subject"]) in audit_rows(db_url)


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_fnserver_bad_input_serve_answers_4xx_problem(bad: Bad, served: str) -> None:
    assert_problem(httpx.post(served, content=bad.body, headers=bad.headers, timeout=30), bad.status)


# -- the local data plane delivering to the real container entrypoint ------------------------------------


async def test_fnserver_serve_via_router_handled_delivered_and_invalid_dead_lettered_once(
    served: str, db_url: str
) -> None:
    from tasktide.router.manifests import load_documents
    from tasktide.router.runtime import EventRuntime

    docs = [
        {"kind": "Broker", "metadata": {"name": "default", "namespace": "tasktide"}},
        {"kind": "KafkaSink", "metadata": {"name": "dlq", "namespace": "tasktide"}, "spec": {"topic": "dlq"}},
        {
            "kind": "Trigger",
            "metadata": {"name": "audit", "namespace": "tasktide"},
            "spec": {
                "broker": "default",
                "subscriber": {"ref": {"kind": "Service", "name": "tasktide-audit"}},
                "delivery": {"retry": 2, "deadLetterSink": {"ref": {"kind": "KafkaSink", "name": "dlq"}}},
            },
        },
    ]
    rt = EventRuntime.create(served.rstrip("/"), manifests=load_documents(docs))
    good = task_event()
    bad = {**task_event(), "data": {"task": {"id": "not-a-uuid"}}}
    await rt.start()
    try:
        for doc in (good, bad):
            event = codec.from_http(STRUCTURED, json.dumps(doc).encode(), raw_data=True)
            await rt.publish(event, "default", "tasktide")
        await rt.drain()
    finally:
        await rt.stop()
    assert (TASK_CREATED, good["subject"]) in audit_rows(db_url)
    (letter,) = rt.dead_letters  # the good one was a success, not a `200 text/html OK` failure
    attrs = codec.attributes(letter.event)
    assert (attrs["id"], attrs["knativeerrorcode"]) == (bad["id"], "400")
    problem = json.loads(base64.b64decode(attrs["knativeerrordata"]))
    assert problem["status"] == 400 and "TaskEventData" in problem["detail"]


def test_fnserver_database_unreachable_serve_answers_5xx_problem_for_redelivery() -> None:
    """A transient failure in the container is a 5xx problem: the dispatcher retries it (issue 9's table)."""
    port, closed = free_port(), free_port()  # nothing listens on `closed`
    unreachable = f"postgresql+psycopg://tasktide:tasktide@127.0.0.1:{closed}/tasktide"
    proc = serve({"FUNCTION_TARGET": "audit", "PORT": str(port), "TASKTIDE_DATABASE_URL": unreachable})
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
        headers, body = binary(task_event())
        response = httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers, timeout=30)
        assert response.status_code >= 500
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert "Traceback" not in response.text and "tasktide:tasktide" not in response.text
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
