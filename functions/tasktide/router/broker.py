"""The in-process Knative Kafka Broker: fan-out of events to matching Triggers, as its dispatcher does.

Consumes :class:`Manifests` (Brokers, Triggers, KafkaSources, KafkaSinks), a resolver turning Destinations
into URLs, an :class:`~tasktide.router.delivery.HttpSender` and a :class:`DeadLetterSink`. Emits HTTP
deliveries to subscribers, reply events back into the broker (bounded by a hop limit) and dead letters,
counted in ``tasktide_dead_letters_total{trigger}`` and
``tasktide_events_consumed_total{outcome="dead_lettered"}``; retries the function itself cannot count (no
answer, or a retryable 4xx) count as ``outcome="retried"``; a dead-letter sink that fails is logged and
counted in ``tasktide_dead_letter_failures_total{trigger}``.

Each Broker is emulated as its Kafka topic would be: an event goes to partition
``murmur2(partitionkey) % partitions`` (the Broker's ConfigMap ``default.topic.partitions``; events without a
``partitionkey`` by their id) at the next offset of that partition. Subscribers get what the dispatcher
sends: binary mode, ``Prefer: reply``, ``Kn-Namespace: <trigger namespace>``, extensions
``knativekafkapartition``/``knativekafkaoffset``, and a W3C ``traceparent`` header only when the record
carries one (the ingress request's ``traceparent`` header, or a KafkaSource record's ``traceparent``
header; never derived from the ``traceparent`` extension). A Trigger annotated
``kafka.eventing.knative.dev/delivery.order: ordered`` gets one event at a time per partition (a retrying
event holds its partition); every other Trigger is unordered: each event is in flight on its own, so a
retrying event holds nothing else back.

``publish`` returns at once; delivery runs in background tasks (``drain()`` waits for them). An event that
a destination could neither deliver nor dead-letter (a dead-letter sink that failed, an unresolvable
subscriber) makes ``dispatch``/``deliver_from_topic`` raise :class:`DeliveryFailed` once every destination
has settled, so a KafkaSource consumer can retry the record instead of committing past it; background
deliveries log it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin

from kafka.partitioner.default import murmur2

from tasktide.messaging import codec
from tasktide.messaging.kafka_client import DEAD_LETTER_TOPIC
from tasktide.observability import metrics
from tasktide.router.delivery import (
    DeadLetterFailed,
    DeadLetterSink,
    DeliveryOutcome,
    HttpSender,
    NoAnswer,
    Sleep,
    deliver,
    post_event,
)
from tasktide.router.filters import matches
from tasktide.router.manifests import DeliverySpec, Destination, KafkaSource, Manifests, Trigger

log = logging.getLogger(__name__)

HOP_LIMIT = 8  # local safety net only: the Kafka Broker produces replies to its topic without any hop count
Resolver = Callable[[Destination], str]
T = TypeVar("T")

__all__ = [
    "HOP_LIMIT",
    "DeadLetterFailed",
    "DeliveryFailed",
    "LocalBroker",
    "Record",
    "UnresolvableDestination",
    "service_resolver",
]


def function_of(dest: Destination) -> str:
    """The ``function`` metrics label of a subscriber: Service ``tasktide-<f>`` -> ``f``, else name/URI."""
    if dest.ref is None:
        return dest.uri or ""
    return dest.ref.name.removeprefix("tasktide-")


class UnresolvableDestination(ValueError):
    """A Destination whose ref kind cannot be turned into a URL."""


class DeliveryFailed(RuntimeError):
    """An event was neither delivered nor dead-lettered by at least one destination.

    ``failures`` pairs each failed destination (Trigger or KafkaSource name) with its error.
    """

    def __init__(self, event_id: str, failures: Sequence[tuple[str, Exception]]) -> None:
        self.event_id = event_id
        self.failures = tuple(failures)
        detail = "; ".join(f"{name}: {exc!r}" for name, exc in self.failures)
        super().__init__(f"event {event_id} neither delivered nor dead-lettered ({detail})")


def _failures(names: Sequence[str], outcomes: Sequence[object]) -> list[tuple[str, Exception]]:
    """The ``(name, error)`` pairs of a ``gather(..., return_exceptions=True)``; re-raises cancellation."""
    failures: list[tuple[str, Exception]] = []
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, Exception):
            failures.append((name, outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
    return failures


def service_resolver(base_url: str) -> Resolver:
    """Service ``S`` -> ``{base_url}/services/S`` (+ relative ``uri``); absolute ``uri`` as is."""
    base = base_url.rstrip("/")
    return url_resolver(lambda name: f"{base}/services/{name}")


def url_resolver(url_of: Callable[[str], str | None]) -> Resolver:
    """Service ``S`` -> ``url_of(S)`` (+ a relative ``uri``); an absolute ``uri`` as is. Any other ref kind,
    or a Service ``url_of`` has no URL for, is unresolvable (the broker dead-letters or retries)."""

    def resolve(dest: Destination) -> str:
        if dest.ref is None:
            if not dest.uri:
                raise UnresolvableDestination("destination has neither ref nor uri")
            return dest.uri
        if dest.ref.kind != "Service":
            raise UnresolvableDestination(f"cannot resolve a {dest.ref.kind} ref to a URL")
        url = url_of(dest.ref.name)
        if url is None:
            raise UnresolvableDestination(f"Service {dest.ref.name} has no URL")
        url = url.rstrip("/")
        return urljoin(url + "/", dest.uri.lstrip("/")) if dest.uri else url

    return resolve


@dataclass(frozen=True)
class Record:
    """An event as it sits in the Broker's (emulated) topic."""

    event: codec.CloudEvent
    partition: int = 0
    offset: int = 0
    traceparent: str | None = None  # a `traceparent` record header, if the record has one


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partitioner: ``murmur2(key) & 0x7fffffff % partitions``."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % max(partitions, 1))


class HttpDeadLetterSink:
    """Dead-letter sink for ``uri``/Service destinations: one POST; raises :class:`DeadLetterFailed`."""

    def __init__(self, sender: HttpSender) -> None:
        self._sender = sender

    async def send(self, event: codec.CloudEvent, target: str) -> None:
        try:
            response = await post_event(self._sender, target, event, 30.0)
        except NoAnswer as exc:
            raise DeadLetterFailed(f"dead-letter sink {target} unreachable: {exc}") from exc
        if response.status >= 300:
            raise DeadLetterFailed(f"dead-letter sink {target} rejected the event: {response.status}")


class LocalBroker:
    """Every Broker in ``manifests``, served in-process."""

    def __init__(
        self,
        manifests: Manifests,
        resolve: Resolver,
        dead_letter_sink: DeadLetterSink,
        *,
        sender: HttpSender | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.manifests = manifests
        self._resolve = resolve
        self.dead_letter_sink = dead_letter_sink
        # keep-alive for every delivery that can be in flight at once (a pool of 20 would open and close
        # connections on every request of a burst of 50)
        self._sender = sender or HttpSender()
        self._owns_sender = sender is None
        self._http_dls = HttpDeadLetterSink(self._sender)
        self._sleep = sleep
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lanes: dict[tuple[str, str, int], asyncio.Task[Any]] = {}
        self._offsets: dict[tuple[str, str, int], itertools.count[int]] = {}
        self._source_lanes: dict[tuple[str, str], asyncio.Task[Any]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Nothing to start: deliveries run as tasks of the running loop."""

    async def drain(self) -> None:
        """Wait until every published event (and the replies it caused) has been handled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        self._lanes.clear()
        self._source_lanes.clear()
        if self._owns_sender:
            await self._sender.close()

    def _spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _background(self, job: Awaitable[object]) -> None:
        try:
            await job
        except DeliveryFailed as exc:  # already logged per Trigger; nobody retries background jobs
            log.error("event lost: %s", exc)
        except Exception:
            log.exception("broker job failed")

    def _in_lane(
        self, lanes: dict[Any, asyncio.Task[Any]], key: Any, make: Callable[[], Awaitable[T]], name: str
    ) -> asyncio.Task[T]:
        """Run ``make()`` after everything queued before it on lane ``key`` has finished (FIFO)."""
        previous = lanes.get(key)

        async def run() -> T:
            if previous is not None:
                await asyncio.wait([previous])
            return await make()

        task = self._spawn(run(), name)
        lanes[key] = task

        def release(done: asyncio.Task[Any]) -> None:
            if lanes.get(key) is done:
                del lanes[key]

        task.add_done_callback(release)
        return task

    # -- public API --------------------------------------------------------------------------------------
    def has_broker(self, namespace: str, name: str) -> bool:
        known = {(b.namespace, b.name) for b in self.manifests.brokers}
        known |= {(t.namespace, t.broker) for t in self.manifests.triggers}
        return (namespace, name) in known

    def partitions(self, broker: str, namespace: str) -> int:
        return next(
            (b.partitions for b in self.manifests.brokers if b.name == broker and b.namespace == namespace), 1
        )

    def append(
        self, event: codec.CloudEvent, broker: str, namespace: str, traceparent: str | None = None
    ) -> Record:
        """The record ``event`` becomes in the Broker's topic: its partition and next offset there."""
        key = str(codec.attributes(event).get("partitionkey", event["id"]))
        partition = partition_of(key, self.partitions(broker, namespace))
        offsets = self._offsets.setdefault((namespace, broker, partition), itertools.count())
        return Record(event, partition, next(offsets), traceparent)

    async def publish(
        self,
        event: codec.CloudEvent,
        broker: str = "default",
        namespace: str = "default",
        *,
        traceparent: str | None = None,
    ) -> None:
        """Accept an event into a broker (as its ingress answers 202); delivery happens in the background."""
        record = self.append(event, broker, namespace, traceparent)
        job = self._dispatch_record(record, broker, namespace, 0)
        self._spawn(self._background(job), f"publish-{event['id']}")

    async def publish_from_topic(self, topic: str, event: codec.CloudEvent) -> None:
        """Emulate the KafkaSources reading ``topic`` (background delivery; an ordered KafkaSource hands one
        event at a time per ``partitionkey`` to a sink that is no Broker; a Broker takes the events in order
        at once, as its ingress does, and its Triggers' own order decides from there)."""
        for source in (s for s in self.manifests.kafka_sources if topic in s.topics):
            to_broker = source.sink.ref is not None and source.sink.ref.kind == "Broker"
            if source.ordered and not to_broker:
                key = (source.name, str(codec.attributes(event).get("partitionkey", event["id"])))
                name = f"source-{source.name}-{event['id']}"
                self._in_lane(
                    self._source_lanes,
                    key,
                    lambda s=source: self._background(self._send_from_source(s, event)),  # type: ignore[misc]
                    name,
                )
            else:
                job = self._background(self._send_from_source(source, event))
                self._spawn(job, f"source-{source.name}-{event['id']}")

    async def _send_from_source(self, source: Any, event: codec.CloudEvent) -> None:
        sent = self.send_to(source.sink, event, source.delivery)
        outcome = await asyncio.gather(sent, return_exceptions=True)
        failures = _failures([source.name], outcome)
        if failures:
            raise DeliveryFailed(str(event["id"]), failures)

    async def deliver_from_topic(
        self, topic: str, event: codec.CloudEvent, traceparent: str | None = None
    ) -> None:
        """Hand ``event`` to the sink of every KafkaSource reading ``topic``; returns once delivered.

        ``traceparent``: the record's ``traceparent`` header, if it has one. Raises :class:`DeliveryFailed`
        (after every source settled) if any source's sink failed.
        """
        sources = [s for s in self.manifests.kafka_sources if topic in s.topics]
        if not sources:
            # normal for a topic other consumers read (task-updates: every API replica follows it for SSE)
            log.debug("no KafkaSource reads topic %s; event %s not routed to a Broker", topic, event["id"])
        outcomes = await asyncio.gather(
            *(self.send_to(s.sink, event, s.delivery, traceparent=traceparent) for s in sources),
            return_exceptions=True,
        )
        failures = _failures([s.name for s in sources], outcomes)
        if failures:
            raise DeliveryFailed(str(event["id"]), failures)

    async def deliver_from_source(
        self, source: KafkaSource, event: codec.CloudEvent, traceparent: str | None = None
    ) -> None:
        """Hand ``event`` (a record ``source`` read) to its sink; returns once delivered or dead-lettered.

        Up to its first await this appends the event to a Broker sink's topic and queues it on the ordered
        Triggers' lanes, so records handed over in order keep their order there (the Kafka mode consumer
        dispatches many records at once). Raises :class:`DeliveryFailed` if the sink failed.
        """
        try:
            await self.send_to(source.sink, event, source.delivery, traceparent=traceparent)
        except Exception as exc:
            raise DeliveryFailed(str(event["id"]), [(source.name, exc)]) from exc

    def triggers_for(self, event: codec.CloudEvent, broker: str, namespace: str) -> list[Trigger]:
        attrs = codec.attributes(event)
        return [
            t
            for t in self.manifests.triggers
            if t.broker == broker and t.namespace == namespace and matches(t, attrs)
        ]

    async def dispatch(
        self,
        event: codec.CloudEvent,
        broker: str = "default",
        namespace: str = "default",
        hops: int = 0,
        *,
        traceparent: str | None = None,
    ) -> None:
        """Deliver ``event`` to every matching Trigger; returns once all are settled.

        Raises :class:`DeliveryFailed` once all settled if any Trigger neither delivered nor dead-lettered
        it (replies of the Triggers that succeeded are still routed).
        """
        record = self.append(event, broker, namespace, traceparent)
        await self._dispatch_record(record, broker, namespace, hops)

    async def _dispatch_record(self, record: Record, broker: str, namespace: str, hops: int) -> None:
        # Everything up to the first await runs synchronously, so lanes keep the order of publication.
        event = record.event
        base = next(
            (b.delivery for b in self.manifests.brokers if b.name == broker and b.namespace == namespace),
            None,
        )
        triggers = self.triggers_for(event, broker, namespace)
        if not triggers:
            log.info(
                "event %s of type %s matches no Trigger of Broker %s/%s: nothing receives it",
                event["id"],
                event["type"],
                namespace,
                broker,
                extra={"ce_id": str(event["id"]), "ce_type": str(event["type"])},
            )
        runs: list[asyncio.Task[DeliveryOutcome | None]] = []
        for trigger in triggers:

            def make(t: Trigger = trigger) -> Awaitable[DeliveryOutcome | None]:
                return self._to_trigger(t, record, (t.delivery or DeliverySpec()).merged_over(base), hops)

            name = f"trigger-{trigger.name}-{event['id']}"
            if trigger.ordered:
                key = (trigger.namespace, trigger.name, record.partition)
                runs.append(self._in_lane(self._lanes, key, make, name))
            else:
                runs.append(self._spawn(make(), name))  # type: ignore[arg-type]
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        failures = _failures([t.name for t in triggers], outcomes)
        for name, exc in failures:
            log.error("trigger %s failed for event %s: %r", name, event["id"], exc)
        if failures:
            raise DeliveryFailed(str(event["id"]), failures)

    async def _to_trigger(
        self, trigger: Trigger, record: Record, delivery: DeliverySpec, hops: int
    ) -> DeliveryOutcome | None:
        event = codec.CloudEvent(
            {
                **codec.attributes(record.event),
                "knativekafkapartition": str(record.partition),
                "knativekafkaoffset": str(record.offset),
            },
            record.event.get_data(),
        )
        outcome = await self.send_to(
            trigger.subscriber,
            event,
            delivery,
            hops,
            trigger=trigger.name,
            namespace=trigger.namespace,
            traceparent=record.traceparent,
        )
        if outcome is not None and outcome.reply is not None:
            self._reply(outcome.reply, trigger.broker, trigger.namespace, hops + 1)
        return outcome

    def _reply(self, event: codec.CloudEvent, broker: str, namespace: str, hops: int) -> None:
        if hops > HOP_LIMIT:
            log.error(
                "dropping reply %s (%s): a reply loop, stopped by the local hop limit %d; a Kafka Broker "
                "has no hop limit and would run it for ever",
                event["id"],
                event["type"],
                HOP_LIMIT,
            )
            return
        record = self.append(event, broker, namespace)
        job = self._dispatch_record(record, broker, namespace, hops)
        self._spawn(self._background(job), f"reply-{event['id']}")

    async def send_to(
        self,
        dest: Destination,
        event: codec.CloudEvent,
        delivery: DeliverySpec | None,
        hops: int = 0,
        *,
        trigger: str | None = None,
        namespace: str | None = None,
        traceparent: str | None = None,
    ) -> DeliveryOutcome | None:
        """Send ``event`` to a Destination: a Broker (re-publish), a KafkaSink, or an HTTP subscriber.

        ``trigger`` names the subscription in the dead-letter metrics (default: the destination's name);
        with ``namespace`` set the request carries the dispatcher's ``Prefer: reply`` and ``Kn-Namespace``.
        """
        if dest.ref is not None and dest.ref.kind == "Broker":
            if hops + 1 > HOP_LIMIT:
                log.warning("dropping %s (%s): hop limit %d exceeded", event["id"], event["type"], HOP_LIMIT)
            else:  # awaited, not queued: a KafkaSource's record counts as handled once its Triggers settled
                await self.dispatch(
                    event, dest.ref.name, dest.ref.namespace, hops + 1, traceparent=traceparent
                )
            return None
        name = trigger or (dest.ref.name if dest.ref else dest.uri or "")
        if dest.ref is not None and dest.ref.kind == "KafkaSink":
            await self.dead_letter_sink.send(event, self.kafka_sink_topic(dest.ref.name))
            return None
        dls, target = self._dead_letter(delivery)
        function, event_type = function_of(dest), str(event["type"])

        def on_retry(status: int | None) -> None:
            if status is None or status < 500:  # a 5xx came from the function, which counted it itself
                metrics.EVENTS_CONSUMED.labels(function, event_type, "retried").inc()

        headers: dict[str, str] = {}
        if namespace is not None:
            headers = {"Prefer": "reply", "Kn-Namespace": namespace}
        if traceparent:
            headers["traceparent"] = traceparent
        outcome = await self._dead_letter_guarded(
            deliver(
                event,
                self._resolve(dest),
                delivery,
                self._sender,
                dead_letter=dls,
                dead_letter_target=target,
                sleep=self._sleep,
                on_retry=on_retry,
                headers=headers,
            ),
            name,
            event,
        )
        if outcome.status == "dead_lettered":
            metrics.DEAD_LETTERS.labels(name).inc()
            metrics.EVENTS_CONSUMED.labels(function, event_type, "dead_lettered").inc()
        return outcome

    async def _dead_letter_guarded(self, job: Awaitable[T], name: str, event: codec.CloudEvent) -> T:
        try:
            return await job
        except DeadLetterFailed as exc:
            metrics.DEAD_LETTER_FAILURES.labels(name).inc()
            log.error("dead-letter sink failed for event %s of %s: %s", event["id"], name, exc)
            raise

    def kafka_sink_topic(self, name: str) -> str:
        return next((s.topic for s in self.manifests.kafka_sinks if s.name == name), DEAD_LETTER_TOPIC)

    def _dead_letter(self, delivery: DeliverySpec | None) -> tuple[DeadLetterSink | None, str]:
        dest = delivery.dead_letter_sink if delivery else None
        if dest is None:
            return None, ""
        if dest.ref is not None and dest.ref.kind == "KafkaSink":
            return self.dead_letter_sink, self.kafka_sink_topic(dest.ref.name)
        return self._http_dls, self._resolve(dest)
