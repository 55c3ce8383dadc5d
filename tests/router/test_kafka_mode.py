"""Kafka mode against a REAL broker (env TASKTIDE_TEST_KAFKA): KafkaSource consumers, commits, dead letters.

Skipped when TASKTIDE_TEST_KAFKA is unset, except under CI=true where that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaTimeoutError

from tasktide.messaging import codec
from tasktide.router.delivery import DeadLetterSink, Sleep
from tasktide.router.manifests import load_documents
from tasktide.router.runtime import EventRuntime

from .support import Behaviour, GatedSleep, RecordingSleep, Subscribers

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

    def trigger(name: str, type_: str, *, ordered: bool = False) -> dict[str, Any]:
        order = {"kafka.eventing.knative.dev/delivery.order": "ordered" if ordered else "unordered"}
        return {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": name, "annotations": order},
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
        trigger("audit", "test.audit", ordered=True),
        trigger("flaky", "test.flaky"),
        trigger("broken", "test.broken"),
        trigger("raw", "dev.knative.kafka.event"),
        trigger("replier", "test.ask"),
        trigger("answers", "test.answer"),
        trigger("notifier", "test.notify"),  # unordered, like eventing/triggers.yaml's notifier
        trigger("ledger", "test.both", ordered=True),  # ordered, like recurring and audit
        trigger("fanout", "test.both"),  # unordered, sees the same events as ledger
    ]


@contextlib.asynccontextmanager
async def _running(
    bootstrap: str, topics: Topics, subscribers: Subscribers, sleep: Sleep, **options: Any
) -> AsyncIterator[EventRuntime]:
    rt = EventRuntime.create(
        subscribers.base_url,
        kafka_bootstrap=bootstrap,
        manifests=load_documents(_docs(topics)),
        sleep=sleep,
        **options,
    )
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def runtime(
    bootstrap: str, topics: Topics, subscribers: Subscribers, fake_sleep: RecordingSleep
) -> AsyncIterator[EventRuntime]:
    async with _running(bootstrap, topics, subscribers, fake_sleep) as rt:
        yield rt


@pytest.fixture
def gate() -> GatedSleep:
    return GatedSleep()


@pytest.fixture
async def gated(
    bootstrap: str, topics: Topics, subscribers: Subscribers, gate: GatedSleep
) -> AsyncIterator[EventRuntime]:
    """The runtime with every retry backoff waiting for ``gate.open()``: a retrying event stays in flight."""
    try:
        async with _running(bootstrap, topics, subscribers, gate) as rt:
            yield rt
    finally:
        gate.open()


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


def _committed(bootstrap: str, topics: Topics) -> dict[int, int]:
    """The group's committed offset of each partition of the source topic (0 where none)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topics.source) or set()
        return {p: int(consumer.committed(TopicPartition(topics.source, p)) or 0) for p in sorted(parts)}
    finally:
        consumer.close(autocommit=False)


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


async def test_kafka_source_ordered_trigger_gets_records_in_order(
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


# -- many records in flight: unordered and ordered Triggers, offsets, crashes ----------------------------


def _subjects(subscribers: Subscribers, name: str) -> list[str]:
    return [str(e["subject"]) for e in subscribers.events(name)]


def _keyed(type_: str, subject: str) -> codec.CloudEvent:
    """An event keyed to partition key ``one-partition`` (one source partition, one Broker partition)."""
    return codec.new_event(
        type_, "/test/kafka", {}, subject=subject, extensions={"partitionkey": "one-partition"}
    )


async def _committed_at(bootstrap: str, topics: Topics, offset: int) -> int:
    """Wait until the source partition holding the events has ``offset`` committed; return that partition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        committed = await asyncio.to_thread(_committed, bootstrap, topics)
        found = [p for p, at in committed.items() if at == offset]
        if found:
            return found[0]
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for offset {offset} to be committed (committed: {committed})")
        await asyncio.sleep(0.1)


async def test_kafka_source_unordered_retrying_event_does_not_delay_others(
    gated: EventRuntime, gate: GatedSleep, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    # 4 users' failing webhooks on one partition must not hold back a 5th user's reminder behind them
    bad = [f"bad-webhook-{i}" for i in range(4)]
    subscribers.behaviours["notifier"] = Behaviour(fail_subjects=frozenset(bad), fail_status=503)
    events = [_keyed("test.notify", s) for s in ["first", *bad, "other-user"]]
    await asyncio.to_thread(_produce, bootstrap, topics.source, events)
    await _until(lambda: "other-user" in _subjects(subscribers, "notifier"), "the other user's event")
    await _until(lambda: len(gate.delays) == 4, "all four failing events to wait in their backoff")
    # delivered while every failing event is still in its first backoff (the gate is shut)
    assert sorted(_subjects(subscribers, "notifier")) == sorted(["first", *bad, "other-user"])
    partition = await _committed_at(bootstrap, topics, 1)  # not past bad-webhook-0, the lowest unfinished
    assert gated.dead_letters == []
    gate.open()
    await _until(lambda: len(gated.dead_letters) == 4, "the four failing events to be dead-lettered")
    assert await _committed_at(bootstrap, topics, 6) == partition
    assert sorted(codec.attributes(d.event)["subject"] for d in gated.dead_letters) == bad


async def test_kafka_source_ordered_retrying_event_blocks_partition(
    gated: EventRuntime, gate: GatedSleep, bootstrap: str, topics: Topics, subscribers: Subscribers
) -> None:
    subscribers.behaviours["ledger"] = Behaviour(fail_times=1, fail_status=503)  # e0's first attempt
    events = [_keyed("test.both", f"e{n}") for n in range(3)]
    await asyncio.to_thread(_produce, bootstrap, topics.source, events)
    # the unordered Trigger on the same events got all three: e1 and e2 went through the Broker...
    await _until(lambda: len(subscribers.events("fanout")) == 3, "all three events at the unordered trigger")
    await _until(lambda: len(gate.delays) == 1, "e0 to wait in the ordered trigger's backoff")
    # ...and wait behind e0 on the ordered Trigger's lane of that partition
    assert _subjects(subscribers, "ledger") == ["e0"]
    assert set((await asyncio.to_thread(_committed, bootstrap, topics)).values()) == {0}  # e0 unfinished
    gate.open()
    await _until(lambda: len(subscribers.events("ledger")) == 4, "e0's retry, then e1 and e2")
    assert _subjects(subscribers, "ledger") == ["e0", "e0", "e1", "e2"]
    await _committed_at(bootstrap, topics, 3)


async def test_kafka_source_crash_mid_flight_redelivers_unfinished(
    bootstrap: str, topics: Topics, subscribers: Subscribers, gate: GatedSleep
) -> None:
    subscribers.behaviours["notifier"] = Behaviour(fail_subjects=frozenset({"in-flight"}), fail_status=503)
    events = [_keyed("test.notify", s) for s in ["done-0", "in-flight", "done-2", "done-3"]]
    async with _running(bootstrap, topics, subscribers, gate):
        await asyncio.to_thread(_produce, bootstrap, topics.source, events)
        await _until(lambda: len(subscribers.events("notifier")) == 4 and gate.delays, "all four dispatched")
        # what a crash now leaves committed: up to the record still in flight, not past it
        await _committed_at(bootstrap, topics, 1)
    # the runtime is gone with "in-flight" unfinished; the next one (same consumer group) starts from it
    subscribers.reset()
    async with _running(bootstrap, topics, subscribers, RecordingSleep()):
        await _until(lambda: "in-flight" in _subjects(subscribers, "notifier"), "the unfinished event again")
        await _committed_at(bootstrap, topics, 4)
    assert sorted(_subjects(subscribers, "notifier")) == ["done-2", "done-3", "in-flight"]  # never done-0


async def test_kafka_source_max_in_flight_bounds_records_dispatched(
    bootstrap: str, topics: Topics, subscribers: Subscribers, gate: GatedSleep
) -> None:
    subscribers.behaviours["notifier"] = Behaviour(always_fail=True, fail_status=503)
    events = [_keyed("test.notify", f"n{i}") for i in range(5)]
    try:
        async with _running(bootstrap, topics, subscribers, gate, max_in_flight=2) as rt:
            (consumer,) = rt.consumers
            await asyncio.to_thread(_produce, bootstrap, topics.source, events)
            await _until(lambda: len(gate.delays) == 2, "two events in flight, waiting in their backoff")
            polls = await _polls_after(consumer, 3)
            # unordered: the two in-flight deliveries race, so they may arrive in either order
            assert sorted(_subjects(subscribers, "notifier")) == ["n0", "n1"], f"after {polls} more polls"
            assert consumer.in_flight == 2
            gate.open()
            await _until(lambda: len(rt.dead_letters) == 5, "every event, two at a time")
            await _committed_at(bootstrap, topics, 5)
    finally:
        gate.open()
    assert sorted(codec.attributes(d.event)["subject"] for d in rt.dead_letters) == [
        f"n{i}" for i in range(5)
    ]


async def _polls_after(consumer: Any, more: int) -> int:
    """Wait until ``consumer`` has gone round its poll loop ``more`` more times."""
    start = consumer.polls
    await _until(lambda: consumer.polls >= start + more, f"{more} more polls")
    return int(consumer.polls - start)
