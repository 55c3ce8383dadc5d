"""Process wiring: which services container a function runs with, the `task-updates` follower's one
set-up (`Services.follow_updates`, stopped by `Services.close`), and the dev publisher's hand-off of stored
events (no JSON round trip)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tasktide.db.migrate import upgrade
from tasktide.domain.tasks import new_task
from tasktide.edges import senderauth
from tasktide.entrypoints.dev import EmbeddedPublisher, build_dev_app
from tasktide.functions import _kit
from tasktide.functions._server import create_function_app
from tasktide.messaging import codec, kafka
from tasktide.messaging.events import TASK_CREATED, TOPIC_TASK_UPDATES, task_envelope
from tasktide.messaging.outbox import OutboxRecord
from tasktide.messaging.stream import StreamHub
from tasktide.services import Services
from tasktide.settings import Settings


def sqlite(tmp_path: Path, name: str) -> str:
    url = f"sqlite:///{tmp_path / name}.db"
    upgrade(url)
    return url


def audit_count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    engine.dispose()
    return int(count)


def created_event() -> dict[str, Any]:
    task = new_task("alice", {"title": "wired"}, now=datetime.now(UTC), task_id=uuid.uuid4())
    return task_envelope(TASK_CREATED, task).to_json()


@pytest.fixture
def two_containers(tmp_path: Path) -> Iterator[tuple[Services, Services]]:
    first = Services.build(Settings(database_url=sqlite(tmp_path, "first")))
    second = Services.build(Settings(database_url=sqlite(tmp_path, "second")))
    yield first, second
    first.close()
    second.close()


def test_create_function_app_services_each_app_runs_with_its_own(
    two_containers: tuple[Services, Services],
) -> None:
    first, second = two_containers
    apps = [create_function_app("audit", services=s).test_client() for s in (first, second)]
    headers, body = codec.to_binary_http(codec.from_dict(created_event()))
    assert apps[1].post("/", headers=headers, data=body).status_code == 204
    assert [audit_count(s.settings.database_url) for s in (first, second)] == [0, 1]
    assert _kit._default is None  # nothing was installed process-wide


def test_build_dev_app_functions_run_with_the_dev_apps_services(tmp_path: Path) -> None:
    apps = [build_dev_app(Settings(database_url=sqlite(tmp_path, name))) for name in ("a", "b")]
    headers, body = codec.to_binary_http(codec.from_dict(created_event()))

    async def post(app: Any) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:
            signed = {**headers, **senderauth.outgoing_headers("http://dev/services/tasktide-audit")}
            response = await client.post("/services/tasktide-audit", headers=signed, content=body)
            return response.status_code

    assert asyncio.run(post(apps[0])) == 204
    urls = [app.state.services.settings.database_url for app in apps]
    assert [audit_count(url) for url in urls] == [1, 0]
    assert _kit._default is None
    for app in apps:
        app.state.services.close()


@dataclass
class FakeFollower:
    bootstrap: str
    topic: str
    on_event: Callable[[dict[str, Any]], None]
    started: bool = False
    stopped: bool = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def followers(monkeypatch: pytest.MonkeyPatch) -> list[FakeFollower]:
    made: list[FakeFollower] = []

    def make(bootstrap: str, topic: str, on_event: Callable[[dict[str, Any]], None]) -> FakeFollower:
        made.append(FakeFollower(bootstrap, topic, on_event))
        return made[-1]

    monkeypatch.setattr(kafka, "TopicFollower", make)
    return made


def kafka_services(tmp_path: Path) -> Services:
    return Services.build(Settings(database_url=sqlite(tmp_path, "k"), kafka_bootstrap="127.0.0.1:9"))


def test_services_follow_updates_once_into_the_hub_and_close_stops_it(
    tmp_path: Path, followers: list[FakeFollower]
) -> None:
    services, hub = kafka_services(tmp_path), StreamHub()
    services.follow_updates(hub)
    services.follow_updates(hub)
    (follower,) = followers
    assert (follower.topic, follower.on_event, follower.started) == (TOPIC_TASK_UPDATES, hub.publish, True)
    services.close()
    assert follower.stopped


def test_services_follow_updates_without_kafka_follows_nothing(
    tmp_path: Path, followers: list[FakeFollower]
) -> None:
    services = Services.build(Settings(database_url=sqlite(tmp_path, "plain")))
    services.follow_updates(StreamHub())
    services.close()
    assert followers == [] and services.updates_follower is None


def test_services_stream_hub_follows_from_the_first_subscriber_on(
    tmp_path: Path, followers: list[FakeFollower]
) -> None:
    services = kafka_services(tmp_path)
    hub = services.stream_hub()
    assert followers == []

    async def subscribe() -> None:
        updates = hub.subscribe("alice")
        pending = asyncio.ensure_future(anext(updates))
        await asyncio.sleep(0)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await updates.aclose()

    asyncio.run(subscribe())
    (follower,) = followers
    assert follower.on_event == hub.publish and follower.started
    services.close()


@dataclass(frozen=True)
class Record:
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


def test_topic_follower_deliver_hands_on_the_structured_dict() -> None:
    doc = created_event()
    received: list[dict[str, Any]] = []
    follower = kafka.TopicFollower("127.0.0.1:9", TOPIC_TASK_UPDATES, received.append)
    follower._deliver(Record(*codec.to_kafka_structured_record(codec.from_dict(doc))))
    follower._deliver(Record(None, [], b"not a cloudevent"))  # skipped, not raised
    assert received == [doc]


class RecordingRuntime:
    def __init__(self) -> None:
        self.published: list[tuple[str, codec.CloudEvent]] = []

    async def publish_to_topic(self, topic: str, event: codec.CloudEvent) -> None:
        self.published.append((topic, event))


def test_embedded_publisher_stored_dict_to_hub_as_is_and_to_the_runtime_as_event() -> None:
    doc = created_event()
    runtime, hub = RecordingRuntime(), StreamHub()
    seen: list[dict[str, Any]] = []
    hub.publish = seen.append  # type: ignore[method-assign]

    async def publish() -> None:
        publisher = EmbeddedPublisher(runtime, hub, asyncio.get_running_loop())  # type: ignore[arg-type]
        records = [OutboxRecord(1, TOPIC_TASK_UPDATES, "k", doc), OutboxRecord(2, "task-events", "k", doc)]
        await asyncio.to_thread(publisher.publish, records)

    asyncio.run(publish())
    assert seen == [doc]  # only task-updates feeds the hub
    assert [topic for topic, _ in runtime.published] == [TOPIC_TASK_UPDATES, "task-events"]
    assert all(codec.to_dict(event) == doc for _, event in runtime.published)
