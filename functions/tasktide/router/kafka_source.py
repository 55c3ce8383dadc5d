"""KafkaSource consumers and dead-letter sinks.

Consumes Kafka records (one kafka-python ``KafkaConsumer`` per KafkaSource, in a background thread,
``enable_auto_commit=False``) and hands each as a CloudEvent to the broker's ``deliver_from_topic`` on the
runtime's event loop, committing the offset only once it was delivered or dead-lettered (one record at a
time, so per-partition order holds). Emits dead letters either to Kafka (``KafkaDeadLetterSink``, error
extensions as ``ce_`` headers) or into memory (``InMemoryDeadLetterSink``, embedded mode), and, every few
seconds, ``tasktide_kafka_consumer_lag{group,topic}`` (end offsets minus positions of assigned partitions).
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

from tasktide import ce, metrics
from tasktide.router.manifests import KafkaSource

log = logging.getLogger(__name__)

Dispatch = Callable[[str, ce.CloudEvent], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class DeadLetter:
    target: str
    event: ce.CloudEvent


class InMemoryDeadLetterSink:
    """Keeps the most recent dead letters in memory and logs each one."""

    def __init__(self, limit: int = 1000) -> None:
        self.records: deque[DeadLetter] = deque(maxlen=limit)

    async def send(self, event: ce.CloudEvent, target: str) -> None:
        attrs = ce.attributes(event)
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

    async def produce(self, event: ce.CloudEvent, topic: str) -> None:
        """Produce ``event`` to ``topic`` (binary mode, keyed by ``partitionkey``)."""
        await asyncio.to_thread(self._produce, event, topic)

    def _produce(self, event: ce.CloudEvent, topic: str) -> None:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, acks="all")
        key, headers, value = ce.to_kafka_record(event)
        self._producer.send(topic, value=value, key=key, headers=headers).get(timeout=30)

    async def send(self, event: ce.CloudEvent, target: str) -> None:
        await super().send(event, target)
        await self.produce(event, target)

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
) -> ce.CloudEvent:
    """A non-CloudEvent record becomes a ``dev.knative.kafka.event``, as the real KafkaSource does."""
    return ce.new_event(
        "dev.knative.kafka.event",
        f"/apis/v1/namespaces/{source.namespace}/kafkasources/{source.name}#{topic}",
        value,
        id=f"partition:{partition}/offset:{offset}",
        subject=f"partition:{partition}#{offset}",
        datacontenttype="application/octet-stream",
    )


class KafkaSourceConsumer:
    """One KafkaSource: a consumer thread feeding ``dispatch`` on ``loop``."""

    def __init__(
        self,
        source: KafkaSource,
        bootstrap: str,
        dispatch: Dispatch,
        loop: asyncio.AbstractEventLoop,
        *,
        poll_timeout_ms: int = 500,
        lag_every: float = 5.0,
    ) -> None:
        self.source = source
        self._bootstrap = bootstrap
        self._dispatch = dispatch
        self._loop = loop
        self._poll_timeout_ms = poll_timeout_ms
        self._lag_every = lag_every
        self._lag_due = 0.0
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
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            *self.source.topics,
            bootstrap_servers=self._bootstrap,
            group_id=self.source.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self._poll_timeout_ms, max_records=1)
                self.ready.set()
                self._report_lag(consumer)
                for records in batches.values():
                    for record in records:
                        if self._stop.is_set():
                            return
                        self._handle(consumer, record)
        except Exception:
            log.exception("KafkaSource %s consumer crashed", self.source.name)
        finally:
            consumer.close(autocommit=False)

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

    def _handle(self, consumer: Any, record: Any) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        try:
            event = ce.from_kafka_record(record.key, record.headers or [], record.value or b"")
        except ce.InvalidEvent:
            event = wrap_raw_record(
                self.source, record.topic, record.partition, record.offset, record.value or b""
            )
        future = asyncio.run_coroutine_threadsafe(self._dispatch(record.topic, event), self._loop)
        while True:
            try:
                future.result(timeout=1.0)
                break
            except TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return  # not committed: redelivered after restart
            except Exception:
                log.exception("dispatch of %s@%d failed; committing past it", record.topic, record.offset)
                break
        tp = TopicPartition(record.topic, record.partition)
        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
