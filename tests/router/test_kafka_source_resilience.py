"""Resilience of the KafkaSource consumer (real Kafka, env TASKTIDE_TEST_KAFKA) and of failed dispatches.

The consumer must survive a broker that is not up yet and a consumer that breaks later (reconnecting with
backoff); a dispatch failure must surface as :class:`DeliveryFailed` (Kafka mode retries the record) while
embedded mode only logs it. Kafka tests are skipped when TASKTIDE_TEST_KAFKA is unset, except under CI=true.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import CommitFailedError

from tasktide.messaging import codec
from tasktide.router.broker import DeliveryFailed, LocalBroker, service_resolver
from tasktide.router.dead_letters import DeadLetterLog
from tasktide.router.kafka_source import KafkaSourceConsumer
from tasktide.router.manifests import Destination, KafkaSource, load_documents

from .support import RecordingSleep, Subscribers

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 90.0


@pytest.fixture
def source(bootstrap: str) -> Iterator[KafkaSource]:
    suffix = uuid.uuid4().hex[:10]
    topic = f"tt-resilience-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)], validate_only=False)
        yield KafkaSource(
            name="src",
            topics=(topic,),
            consumer_group=f"tt-resilience-group-{suffix}",
            sink=Destination(uri="http://unused.invalid/"),
        )
        admin.delete_topics([topic])
    finally:
        admin.close()


class Recorder:
    """A ``Dispatch`` that records event ids (thread-safe reads from the test)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, topic: str, event: codec.CloudEvent, traceparent: str | None = None) -> None:
        with self._lock:
            self.ids.append(str(event["id"]))

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.ids)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    yield Recorder()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # nothing listens once the socket is closed


def _produce(bootstrap: str, topic: str, events: list[codec.CloudEvent]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for event in events:
            key, headers, value = codec.to_kafka_record(event)
            producer.send(topic, value=value, key=key, headers=headers).get(timeout=30)
    finally:
        producer.close()


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return int(consumer.committed(TopicPartition(topic, 0)) or 0)
    finally:
        consumer.close(autocommit=False)


async def _until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def _until_committed(bootstrap: str, source: KafkaSource, offset: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    topic = source.topics[0]
    while await asyncio.to_thread(_committed, bootstrap, source.consumer_group, topic) != offset:
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for offset {offset} to be committed")
        await asyncio.sleep(0.2)


def _events(n: int) -> list[codec.CloudEvent]:
    return [
        codec.new_event("test.resilience", "/test", {"n": i}, extensions={"partitionkey": "k"})
        for i in range(n)
    ]


@pytest.mark.kafka
async def test_kafka_source_consumer_broker_unreachable_at_start_reconnects_and_dispatches(
    bootstrap: str, source: KafkaSource, recorder: Recorder
) -> None:
    attempts: list[str] = []

    def factory(**settings: Any) -> Any:
        attempts.append(settings["bootstrap_servers"])
        if len(attempts) == 1:  # Kafka "not up yet": a real connection attempt to a port nobody serves
            settings |= {"bootstrap_servers": f"127.0.0.1:{_closed_port()}", "bootstrap_timeout_ms": 500}
        return KafkaConsumer(**settings)

    consumer = KafkaSourceConsumer(
        source,
        bootstrap,
        recorder,
        asyncio.get_running_loop(),
        consumer_factory=factory,
        retry_backoff=0.05,
        max_retry_backoff=0.2,
    )
    events = _events(3)
    await asyncio.to_thread(_produce, bootstrap, source.topics[0], events)
    consumer.start()
    try:
        await _until(lambda: len(recorder.seen()) >= 3, "the records to be dispatched after reconnecting")
        await _until_committed(bootstrap, source, 3)
    finally:
        await asyncio.to_thread(consumer.stop)
    assert len(attempts) >= 2
    assert recorder.seen() == [e["id"] for e in events]


class CommitsFail:
    """Wraps a real KafkaConsumer whose every commit raises, as for a consumer a rebalance left behind."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def commit(self, offsets: Any) -> None:
        raise CommitFailedError("simulated rebalance")

    def commit_async(self, offsets: Any) -> Any:
        raise CommitFailedError("simulated rebalance")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.kafka
async def test_kafka_source_consumer_commit_failure_rebuilds_consumer_and_redelivers(
    bootstrap: str, source: KafkaSource, recorder: Recorder
) -> None:
    built: list[Any] = []

    def factory(**settings: Any) -> Any:
        consumer = KafkaConsumer(**settings)
        built.append(CommitsFail(consumer) if not built else consumer)  # only the first one is broken
        return built[-1]

    consumer = KafkaSourceConsumer(
        source, bootstrap, recorder, asyncio.get_running_loop(), consumer_factory=factory, retry_backoff=0.05
    )
    (event,) = _events(1)
    await asyncio.to_thread(_produce, bootstrap, source.topics[0], [event])
    consumer.start()
    try:
        await _until_committed(bootstrap, source, 1)
    finally:
        await asyncio.to_thread(consumer.stop)
    assert len(built) == 2
    assert recorder.seen() == [event["id"], event["id"]]  # at least once: redelivered by the new consumer


def _broken_trigger_docs(subscribers: Subscribers) -> list[dict[str, Any]]:
    def trigger(name: str, ref_kind: str) -> dict[str, Any]:
        return {
            "kind": "Trigger",
            "metadata": {"name": name},
            "spec": {"broker": "default", "subscriber": {"ref": {"kind": ref_kind, "name": name}}},
        }

    return [
        {"kind": "Broker", "metadata": {"name": "default"}},
        trigger("audit", "Service"),
        trigger("nowhere", "Channel"),  # cannot be resolved to a URL
        {
            "kind": "KafkaSource",
            "metadata": {"name": "src"},
            "spec": {"topics": ["t"], "sink": {"ref": {"kind": "Broker", "name": "default"}}},
        },
    ]


async def test_broker_dispatch_unresolvable_trigger_raises_after_other_triggers_delivered(
    subscribers: Subscribers, fake_sleep: RecordingSleep
) -> None:
    broker = LocalBroker(
        load_documents(_broken_trigger_docs(subscribers)),
        service_resolver(subscribers.base_url),
        DeadLetterLog(),
        sleep=fake_sleep,
    )
    event = codec.new_event("anything", "/test", {"x": 1})
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await broker.deliver_from_topic("t", event)
    finally:
        await broker.stop()
    assert [e["id"] for e in subscribers.events("audit")] == [event["id"]]
    assert failed.value.event_id == event["id"]
    assert [name for name, _ in failed.value.failures] == ["src"]


async def test_broker_embedded_publish_from_topic_failure_logged_and_others_keep_going(
    subscribers: Subscribers, fake_sleep: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    broker = LocalBroker(
        load_documents(_broken_trigger_docs(subscribers)),
        service_resolver(subscribers.base_url),
        DeadLetterLog(),
        sleep=fake_sleep,
    )
    first, second = codec.new_event("anything", "/test", 1), codec.new_event("anything", "/test", 2)
    with caplog.at_level(logging.ERROR, logger="tasktide.router.broker"):
        try:
            await broker.publish_from_topic("t", first)
            await broker.publish_from_topic("t", second)
            await broker.drain()
        finally:
            await broker.stop()
    assert sorted(e["id"] for e in subscribers.events("audit")) == sorted([first["id"], second["id"]])
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event lost")]
    assert len(lost) == 2 and any(first["id"] in m for m in lost) and any(second["id"] in m for m in lost)
