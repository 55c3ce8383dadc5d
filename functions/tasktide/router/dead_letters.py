"""Where the local runtime's dead letters go: Kafka (Kafka mode) or nowhere but memory (embedded mode).

Consumes failed events with their KafkaSink topic (``target``). Emits, in Kafka mode, a binary-mode record
on that topic (error extensions as ``ce_`` headers, keyed by ``partitionkey``) through a
:class:`TopicProducer`; in both modes a log line and an entry in a :class:`DeadLetterLog` (the most recent
ones, shown by ``EventRuntime.dead_letters``). Each is a :class:`~tasktide.router.delivery.DeadLetterSink`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from tasktide.messaging import codec
from tasktide.messaging.kafka_client import RecordProducer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    target: str
    event: codec.CloudEvent


class DeadLetterLog:
    """Logs each dead letter and keeps the most recent ``limit`` of them in memory (the embedded sink)."""

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


class TopicProducer(Protocol):
    """Produces a CloudEvent to a Kafka topic, returning once Kafka acknowledged it (else raising)."""

    async def produce(self, event: codec.CloudEvent, topic: str) -> None: ...

    def close(self) -> None: ...


class KafkaEventProducer:
    """:class:`TopicProducer` over one kafka-python producer (binary mode, key = ``partitionkey``)."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 30.0) -> None:
        self._records = RecordProducer(bootstrap, timeout_s=timeout_s, client_id="tasktide-router")

    async def produce(self, event: codec.CloudEvent, topic: str) -> None:
        key, headers, value = codec.to_kafka_record(event)
        await asyncio.to_thread(self._records.send, topic, value, key=key, headers=headers)

    def close(self) -> None:
        self._records.close()


class KafkaDeadLetterSink:
    """Produces each dead letter to its KafkaSink's topic, then records it in ``log``."""

    def __init__(self, producer: TopicProducer, log: DeadLetterLog) -> None:
        self.producer, self.log = producer, log

    async def send(self, event: codec.CloudEvent, target: str) -> None:
        await self.producer.produce(
            event, target
        )  # raises if Kafka did not take it: the caller must not commit
        await self.log.send(event, target)
