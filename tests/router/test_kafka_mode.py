"""Kafka mode against a REAL broker (env TASKTIDE_TEST_KAFKA): KafkaSource consumers, commits, dead letters.

Skipped when TASKTIDE_TEST_KAFKA is unset, except under CI=true where that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaTimeoutError

from tasktide.messaging import codec
from tasktide.router.delivery import DeadLetterSink
from tasktide.router.manifests import load_documents
from tasktide.router.runtime import EventRuntime

from .support import Behaviour, RecordingSleep, Subscribers

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]

WAIT_SECONDS = 90.0


@dataclass(frozen=True)
class Topics:
    source: str
    dead_letter: str
    group: str


@pytest.fixture
def topics(bootstrap: str) -> Iterator[Topics]:
    suffix = uuid.uuid4().hex[:10]
    names = Topics(f"tt-router-src-{suffix}", f"tt-router-dlq-{suffix}", f"tt-router-group-{suffix}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(names.source, 3, 1), NewTopic(names.dead_letter, 1, 1)], validate_only=False
        )
        yield names
        admin.delete_topics([names.source, names.dead_letter])
    finally:
        admin.close()


def _docs(t: Topics) -> list[dict[str, Any]]:
    dls = {"ref": {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "KafkaSink", "name": "dlq"}}
    delivery = {"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT0.1S", "deadLetterSink": dls}

    def trigger(name: str, type_: str) -> dict[str, Any]:
        return {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": name},
            "spec": {
                "broker": "default",
                "filter": {"attributes": {"type": type_}},
                "subscriber": {
                    "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}
                },
                "delivery": delivery,
            },
        }

    return [
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}},
        {"kind": "KafkaSink", "metadata": {"name": "dlq"}, "spec": {"topic": t.dead_letter}},
        {
            "apiVersion": "sources.knative.dev/v1beta1",
            "kind": "KafkaSource",
            "metadata": {"name": "src"},
            "spec": {
                "consumerGroup": t.group,
                "topics": [t.source],
                "sink": {
                    "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
                },
            },
        },
        trigger("audit", "test.audit"),
        trigger("flaky", "test.flaky"),
        trigger("broken", "test.broken"),
        trigger("raw", "dev.knative.kafka.event"),
        trigger("replier", "test.ask"),
        trigger("answers", "test.answer"),
    ]


@pytest.fixture
async def runtime(
    bootstrap: str, topics: Topics, subscribers: Subscribers, fake_sleep: RecordingSleep
) -> AsyncIterator[EventRuntime]:
    rt = EventRuntime.create(
        subscribers.base_url,
        kafka_bootstrap=bootstrap,
        manifests=load_documents(_docs(topics)),
        sleep=fake_sleep,
    )
    await rt.start()
    yield rt
    await rt.stop()


def _produce(bootstrap: str, topic: str, events: list[codec.CloudEvent]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for event in events:
            key, headers, value = codec.to_kafka_record(event)
            producer.send(topic, value=value, key=key, headers=headers).get(timeout=30)
    finally:
        producer.close()


async def _until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


def _lag(bootstrap: str, topics: Topics) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topics.source, p) for p in consumer.partitions_for_topic(topics.source) or ()]
        ends = consumer.end_offsets(parts)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in parts)
    finally:
        consumer.close(autocommit=False)


def _event(type_: str, key: str = "task-1", n: int = 0) -> codec.CloudEvent:
    return codec.new_event(type_, "/test/kafka", {"n": n}, subject=key, extensions={"partitionkey": key})


async def test_kafka_source_record_dispatched_to_subscriber_in_order(
    runtime: EventRuntime, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    events = [_event("test.audit", n=n) for n in range(5)]
    await asyncio.to_thread(_produce, bootstrap, topics.source, events)
    await _until(lambda: len(subscribers.events("audit")) >= 5, "5 deliveries to audit")
    assert [e["id"] for e in subscribers.events("audit")] == [e["id"] for e in events]
    await _until(lambda: _lag(bootstrap, topics) == 0, "committed offsets to reach the end")


async def test_kafka_source_failing_then_succeeding_retried_and_offset_committed(
    runtime: EventRuntime, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    subscribers.behaviours["flaky"] = Behaviour(fail_times=2, fail_status=503)
    event = _event("test.flaky")
    await asyncio.to_thread(_produce, bootstrap, topics.source, [event])
    await _until(lambda: _lag(bootstrap, topics) == 0, "the flaky record's offset to be committed")
    assert [e["id"] for e in subscribers.events("flaky")] == [event["id"]] * 3
    assert runtime.dead_letters == []


def _read_dead_letters(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=WAIT_SECONDS * 1000,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= count:
                break
        return records
    finally:
        consumer.close()


async def test_kafka_source_always_failing_lands_on_dead_letter_topic(
    runtime: EventRuntime, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_status=500, fail_body=b"kaboom")
    event = _event("test.broken", key="task-9")
    await asyncio.to_thread(_produce, bootstrap, topics.source, [event])
    (record,) = await asyncio.to_thread(_read_dead_letters, bootstrap, topics.dead_letter, 1)
    headers = {name: value.decode() for name, value in record.headers}
    assert headers["ce_id"] == event["id"]
    assert headers["ce_knativeerrorcode"] == "500"
    assert headers["ce_knativeerrordest"] == f"{subscribers.base_url}/services/broken"
    assert base64.b64decode(headers["ce_knativeerrordata"]) == b"kaboom"
    assert record.key == b"task-9"
    assert len(subscribers.events("broken")) == 4  # 1 + retry 3
    await _until(lambda: _lag(bootstrap, topics) == 0, "the dead-lettered record's offset to be committed")


class DeadLetterSinkFailingOnce:
    """Wraps the runtime's Kafka dead-letter sink: the first send fails; records the lag at every send."""

    def __init__(self, inner: DeadLetterSink, bootstrap: str, topics: Topics) -> None:
        self.inner, self.bootstrap, self.topics = inner, bootstrap, topics
        self.lag_at_send: list[int] = []

    async def send(self, event: codec.CloudEvent, target: str) -> None:
        self.lag_at_send.append(await asyncio.to_thread(_lag, self.bootstrap, self.topics))
        if len(self.lag_at_send) == 1:
            raise KafkaTimeoutError("simulated dead-letter produce failure")
        await self.inner.send(event, target)


async def test_kafka_source_dead_letter_sink_failing_once_redelivers_then_commits(
    runtime: EventRuntime, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    sink = DeadLetterSinkFailingOnce(runtime.broker.dead_letter_sink, bootstrap, topics)
    runtime.broker.dead_letter_sink = sink
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_status=500)
    event = _event("test.broken", key="task-3")
    await asyncio.to_thread(_produce, bootstrap, topics.source, [event])
    (record,) = await asyncio.to_thread(_read_dead_letters, bootstrap, topics.dead_letter, 1)
    await _until(lambda: _lag(bootstrap, topics) == 0, "the offset to be committed after dead-lettering")
    assert dict(record.headers)["ce_id"].decode() == event["id"]
    assert sink.lag_at_send == [1, 1]  # not committed past the record while its dead letter was missing
    assert len(subscribers.events("broken")) == 8  # (1 + retry 3) per delivery, delivered twice
    assert [d.event["id"] for d in runtime.dead_letters] == [event["id"]]


async def test_kafka_source_plain_record_wrapped_as_kafka_event(
    runtime: EventRuntime, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    def produce_raw() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(topics.source, value=b"not a cloudevent", partition=0).get(timeout=30)
        producer.close()

    await asyncio.to_thread(produce_raw)
    await _until(lambda: bool(subscribers.events("raw")), "the wrapped raw record")
    (received,) = subscribers.events("raw")
    assert received["source"] == f"/apis/v1/namespaces/default/kafkasources/src#{topics.source}"
    assert received["id"] == "partition:0/offset:0"
    assert codec.event_data(received) == b"not a cloudevent"


async def test_runtime_publish_to_topic_in_kafka_mode_produces_and_is_consumed(
    runtime: EventRuntime, topics: Topics, subscribers: Subscribers
) -> None:
    event = _event("test.audit", key="task-5")
    await runtime.publish_to_topic(topics.source, event)
    await _until(lambda: bool(subscribers.events("audit")), "the produced event to reach audit")
    assert [e["id"] for e in subscribers.events("audit")] == [event["id"]]


async def test_kafka_source_filters_route_each_type_only_to_its_trigger(
    bootstrap: str, runtime: EventRuntime, topics: Topics, subscribers: Subscribers
) -> None:
    audit, other = _event("test.audit", key="task-7"), _event("test.unrouted", key="task-8")
    await asyncio.to_thread(_produce, bootstrap, topics.source, [other, audit])
    await _until(lambda: bool(subscribers.events("audit")), "test.audit to reach its trigger")
    await _until(lambda: _lag(bootstrap, topics) == 0, "both offsets to be committed")
    assert [e["id"] for e in subscribers.events("audit")] == [audit["id"]]
    for name in ("flaky", "broken", "raw", "replier", "answers"):
        assert subscribers.events(name) == [], name


async def test_kafka_source_reply_event_routed_onward(
    bootstrap: str, runtime: EventRuntime, topics: Topics, subscribers: Subscribers
) -> None:
    subscribers.behaviours["replier"] = Behaviour(reply_type="test.answer")
    question = _event("test.ask", key="task-9")
    await asyncio.to_thread(_produce, bootstrap, topics.source, [question])
    await _until(lambda: bool(subscribers.events("answers")), "the reply to reach the answers trigger")
    (answer,) = subscribers.events("answers")
    assert codec.event_data(answer) == {"in_reply_to": question["id"]}
