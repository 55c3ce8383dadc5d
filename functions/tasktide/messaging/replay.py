"""`tasktide dead-letters`: inspect the dead-letter topic and replay its events into a broker.

Consumes: records on `tasktide-dead-letter` (binary CloudEvents carrying `knativeerrorcode`,
`knativeerrordest`, `knativeerrordata`). Emits: each event, with those extensions removed, as a binary
CloudEvent POSTed to a Broker ingress URL. Replay is safe because every consumer is idempotent; it reads
with its own consumer group, so a replay resumes where the previous one stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from kafka import KafkaConsumer

from tasktide.messaging import codec
from tasktide.messaging.kafka_client import DEAD_LETTER_TOPIC

ERROR_EXTENSIONS = ("knativeerrorcode", "knativeerrordest", "knativeerrordata")


@dataclass(frozen=True)
class DeadLetterRecord:
    offset: str
    event: codec.CloudEvent

    @property
    def summary(self) -> str:
        attrs = codec.attributes(self.event)
        return " ".join(
            f"{name}={attrs.get(name, '-')}"
            for name in ("id", "type", "subject", "knativeerrorcode", "knativeerrordest")
        )


def read_dead_letters(
    bootstrap: str, *, group: str | None, topic: str = DEAD_LETTER_TOPIC
) -> Iterator[DeadLetterRecord]:
    """Every record from the group's committed offset (or the beginning) to the current end."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        for record in consumer:
            try:
                event = codec.from_kafka_record(record.key, record.headers or [], record.value)
            except codec.InvalidEvent:
                continue
            yield DeadLetterRecord(f"{record.partition}:{record.offset}", event)
            if group is not None:
                consumer.commit()
    finally:
        consumer.close()


def without_error_extensions(event: codec.CloudEvent) -> codec.CloudEvent:
    """The event as it was before it failed: the same attributes (id, time, ...) and data, less the
    dead-letter extensions."""
    attrs = {k: v for k, v in codec.attributes(event).items() if k not in ERROR_EXTENSIONS}
    return codec.CloudEvent(attrs, event.get_data())


def replay(
    bootstrap: str,
    broker_url: str,
    *,
    group: str = "tasktide-dead-letter-replay",
    topic: str = DEAD_LETTER_TOPIC,
) -> int:
    replayed = 0
    with httpx.Client(timeout=10) as client:
        for record in read_dead_letters(bootstrap, group=group, topic=topic):
            headers, body = codec.to_binary_http(without_error_extensions(record.event))
            client.post(broker_url, content=body, headers=headers).raise_for_status()
            replayed += 1
    return replayed
