"""API -> outbox -> Relay + KafkaPublisher -> a REAL Kafka broker, read back with kafka-python.

Consumes env TASKTIDE_TEST_KAFKA (skipped locally when absent, a failure under CI=true), the root `client`,
`services` and `auth` fixtures (SQLite and Postgres). Reads topics `task-events` and `task-updates` from
their end, so records of other tests and earlier runs are never seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from tasktide.messaging import codec
from tasktide.messaging.kafka import KafkaPublisher, PublishFailed, TopicFollower
from tasktide.messaging.outbox import OutboxRecord, Relay
from tasktide.services import Services

pytestmark = pytest.mark.kafka

Auth = Callable[[str], dict[str, str]]
TOPICS = ("task-events", "task-updates")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WAIT_SECONDS = 60.0
QUIET_SECONDS = 1.5  # after the expected records arrived, how long to keep reading to catch duplicates


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not set: `make test` provisions Kafka")
        pytest.skip(f"{name} not set (run `make test` to provision Kafka)")
    return value


@pytest.fixture(scope="module")
def bootstrap() -> str:
    servers = require_env("TASKTIDE_TEST_KAFKA")
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        missing = [t for t in TOPICS if t not in set(admin.list_topics())]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(t, 3, 1) for t in missing])
    finally:
        admin.close()
    return servers


class TopicTail:
    """Reads every partition of some topics from their current end (no consumer group)."""

    def __init__(self, bootstrap: str, topics: tuple[str, ...]) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        assert partitions, f"no partitions for {topics}"
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # seek_to_end is lazy: resolve the offsets now, before the action
            self.consumer.position(tp)

    def collect(self, wanted: Callable[[Any], bool], done: Callable[[list[Any]], bool]) -> list[Any]:
        """Records matching `wanted` until `done(records)` holds, then a quiet period to catch extras."""
        found: list[Any] = []
        deadline = time.monotonic() + WAIT_SECONDS
        quiet_until: float | None = None
        while time.monotonic() < (quiet_until or deadline):
            for batch in self.consumer.poll(timeout_ms=200).values():
                found.extend(r for r in batch if wanted(r))
            if quiet_until is None and done(found):
                quiet_until = time.monotonic() + QUIET_SECONDS
        return found

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def tail(bootstrap: str) -> Iterator[TopicTail]:
    reader = TopicTail(bootstrap, TOPICS)
    yield reader
    reader.close()


@pytest.fixture
def publisher(bootstrap: str) -> Iterator[KafkaPublisher]:
    kafka = KafkaPublisher(bootstrap)
    yield kafka
    kafka.close()


def headers_of(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def per_topic(records: list[Any]) -> dict[str, list[Any]]:
    return {topic: [r for r in records if r.topic == topic] for topic in TOPICS}


def test_kafka_create_task_via_api_publishes_cloudevent_once_per_topic(
    client: TestClient, services: Services, auth: Auth, tail: TopicTail, publisher: KafkaPublisher
) -> None:
    user = f"kafka-{uuid.uuid4().hex[:8]}"
    response = client.post(
        f"/api/{user}/tasks",
        json={"title": "Ship it", "priority": "high", "tags": ["work"]},
        headers={**auth(user), "traceparent": TRACEPARENT},
    )
    assert response.status_code == 201, response.text
    task = response.json()
    key = task["id"].encode()

    sent = Relay(services.sessions, publisher).run_once()
    records = tail.collect(lambda r: r.key == key, lambda found: all(per_topic(found).values()))

    assert sent == 2
    by_topic = per_topic(records)
    assert [len(by_topic[t]) for t in TOPICS] == [1, 1], "each topic carries the event exactly once"
    ids = set()
    for topic in TOPICS:
        (record,) = by_topic[topic]
        headers = headers_of(record)
        assert record.key == key
        assert {
            "ce_specversion",
            "ce_type",
            "ce_source",
            "ce_id",
            "ce_subject",
            "ce_partitionkey",
            "content-type",
        } <= set(headers)
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == "com.tasktide.task.created"
        assert headers["ce_source"] == "/tasktide/api"
        assert headers["ce_subject"] == headers["ce_partitionkey"] == task["id"]
        assert headers["ce_traceparent"] == TRACEPARENT
        assert headers["content-type"] == "application/cloudevents+json"  # structured mode
        envelope = json.loads(record.value)
        assert envelope["id"] == headers["ce_id"]
        assert envelope["type"] == headers["ce_type"]
        assert envelope["datacontenttype"] == "application/json"
        data = envelope["data"]
        assert data["actor"] == user
        assert data["task"]["id"] == task["id"]
        assert data["task"]["user_id"] == user
        assert data["task"]["title"] == "Ship it"
        assert data["task"]["priority"] == "high"
        assert data["task"]["tags"] == ["work"]
        assert data["task"]["version"] == 1
        event = codec.from_kafka_record(record.key, record.headers, record.value)
        assert codec.attributes(event)["type"] == "com.tasktide.task.created"
        ids.add(headers["ce_id"])
    assert len(ids) == 1, "both topics carry the same CloudEvent id"


def test_kafka_update_task_publishes_updated_event_with_changed_fields(
    client: TestClient, services: Services, auth: Auth, tail: TopicTail, publisher: KafkaPublisher
) -> None:
    user = f"kafka-{uuid.uuid4().hex[:8]}"
    created = client.post(f"/api/{user}/tasks", json={"title": "Draft"}, headers=auth(user)).json()
    relay = Relay(services.sessions, publisher)
    relay.run_once()
    patched = client.patch(
        f"/api/{user}/tasks/{created['id']}",
        json={"title": "Final"},
        headers={**auth(user), "content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text

    sent = relay.run_once()
    records = tail.collect(
        lambda r: r.key == created["id"].encode(),
        lambda found: sum(headers_of(r)["ce_type"].endswith(".updated") for r in found) >= 2,
    )

    assert sent == 2
    types = [(r.topic, headers_of(r)["ce_type"]) for r in records]
    assert sorted(types) == sorted(
        [(t, "com.tasktide.task.created") for t in TOPICS]
        + [(t, "com.tasktide.task.updated") for t in TOPICS]
    )
    updated = next(
        r for r in records if r.topic == "task-events" and headers_of(r)["ce_type"].endswith("updated")
    )
    assert json.loads(updated.value)["data"]["changed"] == ["title"]
    assert json.loads(updated.value)["data"]["task"]["version"] == 2


def test_kafka_relay_second_run_publishes_nothing_new(
    client: TestClient, services: Services, auth: Auth, tail: TopicTail, publisher: KafkaPublisher
) -> None:
    user = f"kafka-{uuid.uuid4().hex[:8]}"
    task = client.post(f"/api/{user}/tasks", json={"title": "Once"}, headers=auth(user)).json()
    relay = Relay(services.sessions, publisher)

    first, second = relay.run_once(), relay.run_once()
    records = tail.collect(lambda r: r.key == task["id"].encode(), lambda found: len(found) >= 2)

    assert (first, second) == (2, 0)
    assert sorted(r.topic for r in records) == sorted(TOPICS)


def test_topic_follower_delivers_structured_event_from_kafka(
    bootstrap: str, publisher: KafkaPublisher
) -> None:
    received: list[dict[str, Any]] = []
    arrived = threading.Event()
    subject = str(uuid.uuid4())

    def on_event(event: dict[str, Any]) -> None:
        if event.get("subject") == subject:
            received.append(event)
            arrived.set()

    follower = TopicFollower(bootstrap, "task-updates", on_event)
    follower.start()
    try:
        doc = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "type": "com.tasktide.task.updated",
            "source": "/tasktide/api",
            "subject": subject,
            "partitionkey": subject,
            "datacontenttype": "application/json",
            "data": {"hello": "world"},
        }
        # The follower seeks to the end when it starts; publish until it has seen one (bounded).
        deadline = time.monotonic() + WAIT_SECONDS
        while not arrived.is_set() and time.monotonic() < deadline:
            publisher.publish([OutboxRecord(0, "task-updates", subject, doc)])
            arrived.wait(1.0)
    finally:
        follower.stop()

    assert received, "the follower never delivered the event"
    assert received[0]["type"] == "com.tasktide.task.updated"
    assert received[0]["data"] == {"hello": "world"}
    assert received[0]["partitionkey"] == subject


def test_kafka_publisher_unreachable_broker_raises_publish_failed() -> None:
    doc = {"specversion": "1.0", "id": "x", "type": "t", "source": "/s", "data": {}}
    publisher = KafkaPublisher("127.0.0.1:1", timeout_s=1.0)

    with pytest.raises(PublishFailed, match=r"127\.0\.0\.1:1"):
        publisher.publish([OutboxRecord(1, "task-events", "k", doc)])

    assert publisher._producer is None, "a failed publish drops the producer so the next one reconnects"
