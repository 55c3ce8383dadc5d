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


# -- records in flight at the consumer: ordered and unordered, failures, rebalances -----------------------


class Blocking(Recorder):
    """Records every dispatch; the dispatch of event ``held`` waits until :meth:`release`."""

    def __init__(self, held: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.held = held
        self.gate = asyncio.Event()
        self._loop = loop

    async def __call__(self, topic: str, event: codec.CloudEvent, traceparent: str | None = None) -> None:
        await super().__call__(topic, event, traceparent)
        if event["id"] == self.held:
            await self.gate.wait()

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self.gate.set)


class FailsOnce(Recorder):
    """Records every dispatch; the first dispatch of ``failing`` raises, as after a failed dead letter."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing, self.failed = failing, False

    async def __call__(self, topic: str, event: codec.CloudEvent, traceparent: str | None = None) -> None:
        await super().__call__(topic, event, traceparent)
        if event["id"] == self.failing and not self.failed:
            self.failed = True
            raise DeliveryFailed(str(event["id"]), [("src", RuntimeError("dead-letter sink down"))])


async def _polls_after(consumer: KafkaSourceConsumer, more: int) -> None:
    start = consumer.polls
    await _until(lambda: consumer.polls >= start + more, f"{more} more polls")


@pytest.mark.kafka
@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
async def test_kafka_source_consumer_record_in_flight_holds_back_only_an_ordered_partition(
    bootstrap: str, source: KafkaSource, ordered: bool
) -> None:
    events = _events(3)
    dispatch = Blocking(events[0]["id"], asyncio.get_running_loop())
    consumer = KafkaSourceConsumer(
        source, bootstrap, dispatch, asyncio.get_running_loop(), ordered=ordered, retry_backoff=0.05
    )
    await asyncio.to_thread(_produce, bootstrap, source.topics[0], events)
    consumer.start()
    try:
        await _until(lambda: bool(dispatch.seen()), "the first record in flight")
        if ordered:  # its successors are taken in and wait behind it
            await _until(lambda: consumer.in_flight == 3, "all three records taken in")
            await _polls_after(consumer, 3)
            assert dispatch.seen() == [events[0]["id"]]
        else:  # its successors are delivered and finished while it is in flight
            await _until(lambda: len(dispatch.seen()) == 3, "the records behind it, while it is in flight")
            await _until(lambda: consumer.in_flight == 1, "the records behind it to finish")
        assert await asyncio.to_thread(_committed, bootstrap, source.consumer_group, source.topics[0]) == 0
        dispatch.release()
        await _until_committed(bootstrap, source, 3)
    finally:
        dispatch.release()
        await asyncio.to_thread(consumer.stop)
    assert dispatch.seen() == [e["id"] for e in events]


@pytest.mark.kafka
@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
async def test_kafka_source_consumer_failed_dispatch_retried_before_commit(
    bootstrap: str, source: KafkaSource, ordered: bool
) -> None:
    events = _events(3)
    dispatch = FailsOnce(events[0]["id"])
    consumer = KafkaSourceConsumer(
        source, bootstrap, dispatch, asyncio.get_running_loop(), ordered=ordered, retry_backoff=0.05
    )
    await asyncio.to_thread(_produce, bootstrap, source.topics[0], events)
    consumer.start()
    try:
        await _until_committed(bootstrap, source, 3)
    finally:
        await asyncio.to_thread(consumer.stop)
    first, second, third = (e["id"] for e in events)
    if ordered:  # nothing overtakes the failed record
        assert dispatch.seen() == [first, first, second, third]
    else:  # the failed one came again, the others once each
        assert sorted(dispatch.seen()) == sorted([first, first, second, third])


@pytest.mark.kafka
async def test_kafka_source_consumers_rebalancing_deliver_every_record_and_commit(bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic, group = f"tt-rebalance-{suffix}", f"tt-rebalance-group-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)], validate_only=False)
    source = KafkaSource("src", (topic,), group, Destination(uri="http://unused.invalid/"))
    loop = asyncio.get_running_loop()
    first, second = Recorder(), Recorder()
    consumers = [KafkaSourceConsumer(source, bootstrap, d, loop, retry_backoff=0.05) for d in (first, second)]

    def produce(n: int) -> list[str]:
        batch = [
            codec.new_event("test.rebalance", "/test", {"n": i}, extensions={"partitionkey": f"k{i}"})
            for i in range(n)
        ]
        _produce(bootstrap, topic, batch)
        return [str(e["id"]) for e in batch]

    def committed_total() -> int:
        probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            return sum(int(probe.committed(TopicPartition(topic, p)) or 0) for p in range(3))
        finally:
            probe.close(autocommit=False)

    try:
        ids = await asyncio.to_thread(produce, 30)
        consumers[0].start()
        await _until(lambda: bool(first.seen()), "the first consumer to deliver")
        consumers[1].start()  # the group rebalances while the first one has records in flight
        ids += await asyncio.to_thread(produce, 30)
        await _until(lambda: set(first.seen()) | set(second.seen()) >= set(ids), "every record delivered")
        loop_deadline = loop.time() + WAIT_SECONDS
        while await asyncio.to_thread(committed_total) != 60:
            if loop.time() > loop_deadline:
                pytest.fail("gave up waiting for every offset to be committed")
            await asyncio.sleep(0.2)
    finally:
        await asyncio.gather(*(asyncio.to_thread(c.stop) for c in consumers))
        admin.delete_topics([topic])
        admin.close()


async def test_kafka_source_consumer_settings_fetch_answers_within_20ms_and_on_any_byte() -> None:
    """kafka-python lets a fetch wait 500 ms by default: a record it misses then waits that long."""
    built: list[dict[str, Any]] = []

    def factory(**settings: Any) -> Any:
        built.append(settings)
        return object()

    source = KafkaSource(
        name="src", topics=("t",), consumer_group="g", sink=Destination(uri="http://unused.invalid/")
    )
    consumer = KafkaSourceConsumer(
        source, "127.0.0.1:1", Recorder(), asyncio.get_running_loop(), consumer_factory=factory
    )
    consumer._new_consumer()

    assert built[0]["fetch_max_wait_ms"] <= 20
    assert built[0]["fetch_min_bytes"] == 1
