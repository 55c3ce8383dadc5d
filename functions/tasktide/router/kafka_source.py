"""KafkaSource consumers and dead-letter sinks.

Consumes Kafka records (one kafka-python ``KafkaConsumer`` per KafkaSource, in a background thread,
``enable_auto_commit=False``) and hands each as a CloudEvent to the broker's ``deliver_from_topic`` on the
runtime's event loop, committing the offset only once it was delivered or dead-lettered (one record at a
time, so per-partition order holds). A record whose dispatch failed is not committed: the consumer seeks back
to it and retries it after a bounded exponential backoff; a consumer that cannot connect, or whose poll or
commit fails, is closed and rebuilt after the same kind of backoff, until ``stop()``. Emits dead letters
either to Kafka (``KafkaDeadLetterSink``, error extensions as ``ce_`` headers) or into memory
(``InMemoryDeadLetterSink``, embedded mode), and, every few seconds,
``tasktide_kafka_consumer_lag{group,topic}`` (end offsets minus positions of assigned partitions).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tasktide.messaging import codec
from tasktide.observability import metrics
from tasktide.router.manifests import KafkaSource

log = logging.getLogger(__name__)

Dispatch = Callable[..., Coroutine[Any, Any, None]]  # (topic, event, *, traceparent: str | None)
ConsumerFactory = Callable[..., Any]  # (*topics, **KafkaConsumer settings) -> a KafkaConsumer-like object
BOOTSTRAP_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class DeadLetter:
    target: str
    event: codec.CloudEvent


class InMemoryDeadLetterSink:
    """Keeps the most recent dead letters in memory and logs each one."""

    def __init__(self, limit: int = 1000) -> None:
        self.records: deque[DeadLetter] = deque(maxlen=limit)

    async def send(self, event: codec.CloudEvent, target: str) -> None:
        attrs = codec.attributes(event)
        log.warning(
            "dead letter -> %s: id=%s type=%s code=%s dest=%s",
            target,
            attrs.get("id"),
            attrs.get("type"),
            attrs.get("knativeerrorcode"),
            attrs.get("knativeerrordest"),
        )
        self.records.append(DeadLetter(target, event))


class KafkaDeadLetterSink(InMemoryDeadLetterSink):
    """Produces dead letters (binary mode) to the KafkaSink's topic; also remembers them in memory."""

    def __init__(self, bootstrap: str, limit: int = 1000) -> None:
        super().__init__(limit)
        self._bootstrap = bootstrap
        self._producer: Any = None

    async def produce(self, event: codec.CloudEvent, topic: str) -> None:
        """Produce ``event`` to ``topic`` (binary mode, keyed by ``partitionkey``)."""
        await asyncio.to_thread(self._produce, event, topic)

    def _produce(self, event: codec.CloudEvent, topic: str) -> None:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, acks="all")
        key, headers, value = codec.to_kafka_record(event)
        self._producer.send(topic, value=value, key=key, headers=headers).get(timeout=30)

    async def send(self, event: codec.CloudEvent, target: str) -> None:
        await self.produce(event, target)  # raises if Kafka did not take it: the caller must not commit
        await super().send(event, target)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


def consumer_lag(consumer: Any) -> dict[str, int]:
    """Records behind the end of each topic, summed over the partitions assigned to ``consumer``."""
    assigned = list(consumer.assignment())
    if not assigned:
        return {}
    ends = consumer.end_offsets(assigned)
    lag: dict[str, int] = {}
    for tp in assigned:
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, int(ends.get(tp, 0)) - int(consumer.position(tp)))
    return lag


def wrap_raw_record(
    source: KafkaSource, topic: str, partition: int, offset: int, value: bytes
) -> codec.CloudEvent:
    """A non-CloudEvent record becomes a ``dev.knative.kafka.event``, as the real KafkaSource does."""
    return codec.new_event(
        "dev.knative.kafka.event",
        f"/apis/v1/namespaces/{source.namespace}/kafkasources/{source.name}#{topic}",
        value,
        id=f"partition:{partition}/offset:{offset}",
        subject=f"partition:{partition}#{offset}",
        datacontenttype="application/octet-stream",
    )


def record_traceparent(headers: Any) -> str | None:
    """The W3C ``traceparent`` record header (not ``ce_traceparent``), which the dispatcher forwards."""
    for name, value in headers:
        if name.lower() == "traceparent" and value:
            return bytes(value).decode("latin-1")
    return None


def retry_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after failure number ``failures`` in a row: ``base * 2^(failures-1)``, <= ``cap``."""
    return float(min(cap, base * 2 ** max(failures - 1, 0)))


class KafkaSourceConsumer:
    """One KafkaSource: a consumer thread feeding ``dispatch`` on ``loop``.

    ``consumer_factory`` (default ``kafka.KafkaConsumer``) is called with the topics and consumer settings
    each time a consumer is (re)built. ``retry_backoff``/``max_retry_backoff`` bound the waits (seconds)
    before reconnecting and before re-dispatching a failed record.
    """

    def __init__(
        self,
        source: KafkaSource,
        bootstrap: str,
        dispatch: Dispatch,
        loop: asyncio.AbstractEventLoop,
        *,
        poll_timeout_ms: int = 500,
        lag_every: float = 5.0,
        consumer_factory: ConsumerFactory | None = None,
        retry_backoff: float = 0.5,
        max_retry_backoff: float = 30.0,
    ) -> None:
        self.source = source
        self._bootstrap = bootstrap
        self._dispatch = dispatch
        self._loop = loop
        self._poll_timeout_ms = poll_timeout_ms
        self._lag_every = lag_every
        self._lag_due = 0.0
        self._consumer_factory = consumer_factory
        self._retry_backoff = retry_backoff
        self._max_retry_backoff = max_retry_backoff
        self._connect_failures = 0
        self._record_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"kafkasource-{self.source.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:
                self._connect_failures += 1
                delay = retry_delay(self._connect_failures, self._retry_backoff, self._max_retry_backoff)
                log.warning(
                    "KafkaSource %s consumer failed (%s: %s); reconnecting in %.1fs",
                    self.source.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._stop.wait(delay)

    def _new_consumer(self) -> Any:
        factory = self._consumer_factory
        settings: dict[str, Any] = {
            "bootstrap_servers": self._bootstrap,
            "group_id": self.source.consumer_group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
        }
        if factory is None:
            from kafka import KafkaConsumer

            factory = KafkaConsumer
            if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:  # kafka-python 3: keeps stop() prompt
                settings["bootstrap_timeout_ms"] = BOOTSTRAP_TIMEOUT_MS
        return factory(*self.source.topics, **settings)

    def _consume(self) -> None:
        """Build a consumer and poll until stopped; raises whatever breaks it (closed either way)."""
        consumer = self._new_consumer()
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self._poll_timeout_ms, max_records=1)
                self._connect_failures = 0
                self.ready.set()
                self._report_lag(consumer)
                self._handle_batches(consumer, batches)
        finally:
            try:
                consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("KafkaSource %s: closing the consumer failed: %s", self.source.name, exc)

    def _handle_batches(self, consumer: Any, batches: dict[Any, list[Any]]) -> None:
        for records in batches.values():
            for record in records:
                if self._stop.is_set() or not self._handle(consumer, record):
                    return  # after a failure the remaining records are fetched again from the seek

    def _report_lag(self, consumer: Any) -> None:
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + self._lag_every
        try:
            lag = consumer_lag(consumer)
        except Exception as exc:  # metrics must never stop consumption
            log.debug("KafkaSource %s: lag not measured: %s", self.source.name, exc)
            return
        for topic, behind in lag.items():
            metrics.KAFKA_CONSUMER_LAG.labels(self.source.consumer_group, topic).set(behind)

    def _handle(self, consumer: Any, record: Any) -> bool:
        """Dispatch one record and commit it; False (nothing committed) if it must be consumed again."""
        from kafka.structs import OffsetAndMetadata, TopicPartition

        try:
            event = codec.from_kafka_record(
                record.key, record.headers or [], record.value or b"", raw_data=True
            )
        except codec.InvalidEvent:
            event = wrap_raw_record(
                self.source, record.topic, record.partition, record.offset, record.value or b""
            )
        tp = TopicPartition(record.topic, record.partition)
        traceparent = record_traceparent(record.headers or [])
        future = asyncio.run_coroutine_threadsafe(
            self._dispatch(record.topic, event, traceparent=traceparent), self._loop
        )
        while True:
            try:
                future.result(timeout=1.0)
                break
            except TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return False  # not committed: redelivered after restart
            except Exception as exc:
                self._retry_later(consumer, tp, record, exc)
                return False
        self._record_failures = 0
        # Asynchronous: the next record is dispatched without waiting for the coordinator's answer (a
        # synchronous commit put a broker round trip between every two deliveries). Commits of a partition
        # complete in order, and none goes past a record not yet delivered; one lost in a crash only means
        # that record is delivered again (every consumer is idempotent).
        consumer.commit_async({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
        return True

    def _retry_later(self, consumer: Any, tp: Any, record: Any, exc: Exception) -> None:
        """Rewind to ``record`` (uncommitted) so the next poll returns it again, after a backoff."""
        self._record_failures += 1
        delay = retry_delay(self._record_failures, self._retry_backoff, self._max_retry_backoff)
        log.error(
            "KafkaSource %s: dispatch of %s[%d]@%d failed (attempt %d), retrying in %.1fs: %s",
            self.source.name,
            record.topic,
            record.partition,
            record.offset,
            self._record_failures,
            delay,
            exc,
        )
        consumer.seek(tp, record.offset)
        self._stop.wait(delay)
