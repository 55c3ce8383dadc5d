"""kafka-python adapters: the outbox's Kafka publisher (structured-mode CloudEvents, key = task id) and
`TopicFollower` (every partition of a topic from its end, no consumer group: the SSE feed)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tasktide.messaging import codec
from tasktide.messaging.outbox import OutboxRecord

if TYPE_CHECKING:  # kafka-python is imported when a producer or consumer is made, not with this module
    from kafka import KafkaProducer

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    """Kafka did not acknowledge a batch; the records stay in the outbox."""


class KafkaPublisher:
    """Publishes outbox records with acks=all; reconnects lazily after a broker outage."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 10.0) -> None:
        self.bootstrap, self.timeout_s = bootstrap, timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            from tasktide.messaging.kafka_client import make_producer

            self._producer = make_producer(
                self.bootstrap, timeout_s=self.timeout_s, client_id="tasktide-relay", linger_ms=2
            )
        return self._producer

    def publish(self, records: Sequence[OutboxRecord]) -> None:
        with self._lock:
            try:
                producer = self._connect()
                futures = []
                for record in records:
                    event = codec.from_dict(record.event)
                    key, headers, value = codec.to_kafka_structured_record(event, record.key)
                    futures.append(producer.send(record.topic, key=key, value=value, headers=headers))
                producer.flush(timeout=self.timeout_s)
                for future in futures:
                    future.get(timeout=self.timeout_s)
            except Exception as exc:
                self.close()
                raise PublishFailed(f"Kafka at {self.bootstrap} did not take the batch: {exc}") from exc

    def close(self) -> None:
        if self._producer is not None:
            from tasktide.messaging.kafka_client import close_quietly

            close_quietly(self._producer)
            self._producer = None


class TopicFollower:
    """Follows every partition of a topic from its end, without a consumer group (each process sees all);
    ``on_event`` gets each CloudEvent as its structured-mode dict (``codec.to_dict``)."""

    def __init__(self, bootstrap: str, topic: str, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.bootstrap, self.topic, self.on_event = bootstrap, topic, on_event
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._follow()
            except Exception as exc:
                log.warning("following %s failed, retrying: %s", self.topic, exc)
                self._stopped.wait(1.0)

    def _follow(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from tasktide.messaging.kafka_client import CONSUMER_FETCH_SETTINGS

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            **CONSUMER_FETCH_SETTINGS,
        )
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not assigned:
                self._stopped.wait(1.0)
                return
            consumer.assign(assigned)
            consumer.seek_to_end(*assigned)
            while not self._stopped.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        self._deliver(record)
        finally:
            consumer.close()

    def _deliver(self, record: Any) -> None:
        try:
            event = codec.from_kafka_record(record.key, record.headers or [], record.value)
        except codec.InvalidEvent as exc:
            log.warning("skipping a record on %s that is not a CloudEvent: %s", self.topic, exc)
            return
        self.on_event(codec.to_dict(event))
