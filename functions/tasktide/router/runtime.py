"""``EventRuntime``: the whole local eventing plane behind one start/stop.

Consumes a base URL (where ``/services/<name>`` functions are served) or a resolver of Destinations, the
manifest directories, an optional Kafka bootstrap (Kafka mode: KafkaSource consumers + Kafka dead-letter
sink; otherwise embedded: in-process topics + in-memory dead letters) and an optional PingSource interval
override. Emits the broker ingress router and deliveries to subscribers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter

from tasktide.messaging import codec
from tasktide.router.broker import LocalBroker, Resolver, service_resolver
from tasktide.router.dead_letters import (
    DeadLetter,
    DeadLetterLog,
    KafkaDeadLetterSink,
    KafkaEventProducer,
    TopicProducer,
)
from tasktide.router.delivery import DeadLetterSink, HttpSender, Sleep
from tasktide.router.ingress import make_ingress_router
from tasktide.router.kafka_source import DEFAULT_MAX_IN_FLIGHT, Dispatch, KafkaSourceConsumer
from tasktide.router.manifests import KafkaSource, Manifests, load_manifests
from tasktide.router.ping import PingScheduler


@dataclass
class EventRuntime:
    manifests: Manifests
    broker: LocalBroker
    dead_letter_log: DeadLetterLog
    ping: PingScheduler
    kafka_bootstrap: str | None = None
    producer: TopicProducer | None = None  # Kafka mode: dead letters and publish_to_topic
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT  # per KafkaSource consumer
    consumers: list[KafkaSourceConsumer] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        base_url: str,
        eventing_dir: Path | None = None,
        knative_dir: Path | None = None,
        kafka_bootstrap: str | None = None,
        ping_every: float | None = None,
        *,
        manifests: Manifests | None = None,
        sender: HttpSender | None = None,
        sleep: Sleep = asyncio.sleep,
        producer: TopicProducer | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        resolver: Resolver | None = None,
    ) -> EventRuntime:
        """Build (but do not start) the runtime; nothing connects until :meth:`start`.

        Service refs resolve to ``{base_url}/services/<name>`` (every function in one process, as
        ``tasktide dev`` serves them) unless ``resolver`` maps them (e.g. each Service to its own process).

        Kafka mode (``kafka_bootstrap``): ``producer`` (default a :class:`KafkaEventProducer`) writes dead
        letters and :meth:`publish_to_topic`; each KafkaSource consumer keeps at most ``max_in_flight``
        records in flight."""
        if manifests is None:
            dirs: Sequence[Path] = [d for d in (eventing_dir, knative_dir) if d is not None]
            manifests = load_manifests(*dirs)
        log = DeadLetterLog()
        if kafka_bootstrap and producer is None:
            producer = KafkaEventProducer(kafka_bootstrap)
        sink: DeadLetterSink = KafkaDeadLetterSink(producer, log) if producer is not None else log
        resolve = resolver or service_resolver(base_url)
        broker = LocalBroker(manifests, resolve, sink, sender=sender, sleep=sleep)
        ping = PingScheduler(
            manifests.ping_sources, lambda dest, event: broker.send_to(dest, event, None), ping_every
        )
        return cls(manifests, broker, log, ping, kafka_bootstrap, producer, max_in_flight)

    @property
    def kafka_mode(self) -> bool:
        return self.kafka_bootstrap is not None

    @property
    def ingress_router(self) -> APIRouter:
        return make_ingress_router(self.broker)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return list(self.dead_letter_log.records)

    def _dispatcher(self, source: KafkaSource) -> Dispatch:
        async def dispatch(topic: str, event: codec.CloudEvent, *, traceparent: str | None = None) -> None:
            await self.broker.deliver_from_source(source, event, traceparent)

        return dispatch

    async def start(self) -> None:
        await self.broker.start()
        await self.ping.start()
        if self.kafka_bootstrap:
            loop = asyncio.get_running_loop()
            for source in self.manifests.kafka_sources:
                consumer = KafkaSourceConsumer(
                    source,
                    self.kafka_bootstrap,
                    self._dispatcher(source),
                    loop,
                    max_in_flight=self.max_in_flight,
                )
                consumer.start()
                self.consumers.append(consumer)

    async def stop(self) -> None:
        await self.ping.stop()
        await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.consumers))
        self.consumers.clear()
        await self.broker.stop()
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close)

    async def publish(
        self, event: codec.CloudEvent, broker: str = "default", namespace: str = "default"
    ) -> None:
        await self.broker.publish(event, broker, namespace)

    async def publish_to_topic(self, topic: str, event: codec.CloudEvent) -> None:
        """Embedded: emulate the KafkaSources of ``topic``. Kafka mode: produce the record to Kafka, where
        the KafkaSource consumers pick it up (the outbox relay normally produces directly)."""
        if self.producer is not None:
            await self.producer.produce(event, topic)
        else:
            await self.broker.publish_from_topic(topic, event)

    async def drain(self) -> None:
        await self.broker.drain()
