"""The in-process Knative Broker: fan-out of events to matching Triggers.

Consumes :class:`Manifests` (Brokers, Triggers, KafkaSources, KafkaSinks), a resolver turning Destinations
into URLs, an ``httpx.AsyncClient`` and a :class:`DeadLetterSink`. Emits HTTP deliveries to subscribers,
reply events back into the broker (bounded by a hop limit) and dead letters, counted in
``tasktide_dead_letters_total{trigger}`` and ``tasktide_events_consumed_total{outcome="dead_lettered"}``;
retries the function itself cannot count (no answer, or a retryable 4xx) count as ``outcome="retried"``.
``publish`` only enqueues; worker tasks deliver in the background (``drain()`` waits for them).
An event that a destination could neither deliver nor dead-letter (a dead-letter sink that failed, an
unresolvable subscriber) makes ``dispatch``/``deliver_from_topic`` raise :class:`DeliveryFailed` once every
destination has settled, so a KafkaSource consumer can retry the record instead of committing past it;
background workers log it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urljoin

import httpx

from tasktide import ce, metrics
from tasktide.router.delivery import DeadLetterSink, DeliveryOutcome, Sleep, deliver, post_event
from tasktide.router.filters import matches
from tasktide.router.manifests import DeliverySpec, Destination, Manifests, Trigger

log = logging.getLogger(__name__)

HOP_LIMIT = 8
DEFAULT_DEAD_LETTER_TOPIC = "tasktide-dead-letter"
Resolver = Callable[[Destination], str]
Job = Callable[[], Awaitable[None]]


def function_of(dest: Destination) -> str:
    """The ``function`` metrics label of a subscriber: Service ``tasktide-<f>`` -> ``f``, else name/URI."""
    if dest.ref is None:
        return dest.uri or ""
    return dest.ref.name.removeprefix("tasktide-")


class UnresolvableDestination(ValueError):
    """A Destination whose ref kind cannot be turned into a URL."""


class DeadLetterFailed(RuntimeError):
    """A dead-letter sink did not accept an event."""


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

    def resolve(dest: Destination) -> str:
        if dest.ref is None:
            if not dest.uri:
                raise UnresolvableDestination("destination has neither ref nor uri")
            return dest.uri
        if dest.ref.kind != "Service":
            raise UnresolvableDestination(f"cannot resolve a {dest.ref.kind} ref to a URL")
        url = f"{base}/services/{dest.ref.name}"
        return urljoin(url + "/", dest.uri.lstrip("/")) if dest.uri else url

    return resolve


class HttpDeadLetterSink:
    """Dead-letter sink for ``uri``/Service destinations: one POST; raises :class:`DeadLetterFailed`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, event: ce.CloudEvent, target: str) -> None:
        try:
            response = await post_event(self._client, target, event, 30.0)
        except httpx.HTTPError as exc:
            raise DeadLetterFailed(f"dead-letter sink {target} unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise DeadLetterFailed(f"dead-letter sink {target} rejected the event: {response.status_code}")


class LocalBroker:
    """Every Broker in ``manifests``, served in-process."""

    def __init__(
        self,
        manifests: Manifests,
        resolve: Resolver,
        dead_letter_sink: DeadLetterSink,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        workers: int = 4,
    ) -> None:
        self.manifests = manifests
        self._resolve = resolve
        self.dead_letter_sink = dead_letter_sink
        self._client = client or httpx.AsyncClient()
        self._owns_client = client is None
        self._http_dls = HttpDeadLetterSink(self._client)
        self._sleep = sleep
        self._n_workers = workers
        self._queue: asyncio.Queue[Job] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._key_locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._workers = [
                asyncio.create_task(self._work(), name=f"broker-{i}") for i in range(self._n_workers)
            ]

    async def drain(self) -> None:
        """Wait until every queued event (and the replies it caused) has been handled."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers, self._queue = [], None
        if self._owns_client:
            await self._client.aclose()

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                await job()
            except DeliveryFailed as exc:  # already logged per Trigger; nobody retries background jobs
                log.error("event lost: %s", exc)
            except Exception:
                log.exception("broker job failed")
            finally:
                self._queue.task_done()

    async def _enqueue(self, job: Job) -> None:
        await self.start()
        assert self._queue is not None
        self._queue.put_nowait(job)

    # -- public API --------------------------------------------------------------------------------------
    def has_broker(self, namespace: str, name: str) -> bool:
        known = {(b.namespace, b.name) for b in self.manifests.brokers}
        known |= {(t.namespace, t.broker) for t in self.manifests.triggers}
        return (namespace, name) in known

    async def publish(
        self, event: ce.CloudEvent, broker: str = "default", namespace: str = "default"
    ) -> None:
        """Accept an event into a broker; delivery happens in the background."""
        await self._enqueue(lambda: self.dispatch(event, broker, namespace))

    async def publish_from_topic(self, topic: str, event: ce.CloudEvent) -> None:
        """Emulate the KafkaSources reading ``topic`` (background delivery, ordered per ``partitionkey``)."""
        key = (topic, str(ce.attributes(event).get("partitionkey", event["id"])))

        async def job() -> None:
            entry = self._key_locks.setdefault(key, (asyncio.Lock(), [0]))
            entry[1][0] += 1
            try:
                async with entry[0]:
                    await self.deliver_from_topic(topic, event)
            finally:
                entry[1][0] -= 1
                if entry[1][0] == 0:
                    del self._key_locks[key]

        await self._enqueue(job)

    async def deliver_from_topic(self, topic: str, event: ce.CloudEvent) -> None:
        """Hand ``event`` to the sink of every KafkaSource reading ``topic``; returns once delivered.

        Raises :class:`DeliveryFailed` (after every source settled) if any source's sink failed.
        """
        sources = [s for s in self.manifests.kafka_sources if topic in s.topics]
        if not sources:
            # normal for a topic other consumers read (task-updates: every API replica follows it for SSE)
            log.debug("no KafkaSource reads topic %s; event %s not routed to a Broker", topic, event["id"])
        outcomes = await asyncio.gather(
            *(self.send_to(s.sink, event, s.delivery) for s in sources), return_exceptions=True
        )
        failures = _failures([s.name for s in sources], outcomes)
        if failures:
            raise DeliveryFailed(str(event["id"]), failures)

    def triggers_for(self, event: ce.CloudEvent, broker: str, namespace: str) -> list[Trigger]:
        attrs = ce.attributes(event)
        return [
            t
            for t in self.manifests.triggers
            if t.broker == broker and t.namespace == namespace and matches(t, attrs)
        ]

    async def dispatch(
        self, event: ce.CloudEvent, broker: str = "default", namespace: str = "default", hops: int = 0
    ) -> None:
        """Deliver ``event`` to every matching Trigger concurrently; returns once all are settled.

        Raises :class:`DeliveryFailed` once all settled if any Trigger neither delivered nor dead-lettered
        it (replies of the Triggers that succeeded are still routed).
        """
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
        outcomes = await asyncio.gather(
            *(
                self.send_to(
                    t.subscriber,
                    event,
                    (t.delivery or DeliverySpec()).merged_over(base),
                    hops,
                    trigger=t.name,
                )
                for t in triggers
            ),
            return_exceptions=True,
        )
        failures = _failures([t.name for t in triggers], outcomes)
        for name, exc in failures:
            log.error("trigger %s failed for event %s: %r", name, event["id"], exc)
        for outcome in outcomes:
            if isinstance(outcome, DeliveryOutcome) and outcome.reply is not None:
                await self._reply(outcome.reply, broker, namespace, hops + 1)
        if failures:
            raise DeliveryFailed(str(event["id"]), failures)

    async def _reply(self, event: ce.CloudEvent, broker: str, namespace: str, hops: int) -> None:
        if hops > HOP_LIMIT:
            log.warning(
                "dropping reply %s (%s): hop limit %d exceeded", event["id"], event["type"], HOP_LIMIT
            )
            return
        await self._enqueue(lambda: self.dispatch(event, broker, namespace, hops))

    async def send_to(
        self,
        dest: Destination,
        event: ce.CloudEvent,
        delivery: DeliverySpec | None,
        hops: int = 0,
        *,
        trigger: str | None = None,
    ) -> DeliveryOutcome | None:
        """Send ``event`` to a Destination: a Broker (re-publish), a KafkaSink, or an HTTP subscriber.

        ``trigger`` names the subscription in the dead-letter metrics (default: the destination's name).
        """
        if dest.ref is not None and dest.ref.kind == "Broker":
            if hops + 1 > HOP_LIMIT:
                log.warning("dropping %s (%s): hop limit %d exceeded", event["id"], event["type"], HOP_LIMIT)
            else:  # awaited, not queued: a KafkaSource's record counts as handled once its Triggers settled
                await self.dispatch(event, dest.ref.name, dest.ref.namespace, hops + 1)
            return None
        if dest.ref is not None and dest.ref.kind == "KafkaSink":
            await self.dead_letter_sink.send(event, self.kafka_sink_topic(dest.ref.name))
            return None
        dls, target = self._dead_letter(delivery)
        function, event_type = function_of(dest), str(event["type"])

        def on_retry(status: int | None) -> None:
            if status is None or status < 500:  # a 5xx came from the function, which counted it itself
                metrics.EVENTS_CONSUMED.labels(function, event_type, "retried").inc()

        outcome = await deliver(
            event,
            self._resolve(dest),
            delivery,
            self._client,
            dead_letter=dls,
            dead_letter_target=target,
            sleep=self._sleep,
            on_retry=on_retry,
        )
        if outcome.status == "dead_lettered":
            metrics.DEAD_LETTERS.labels(trigger or (dest.ref.name if dest.ref else dest.uri or "")).inc()
            metrics.EVENTS_CONSUMED.labels(function, event_type, "dead_lettered").inc()
        return outcome

    def kafka_sink_topic(self, name: str) -> str:
        return next(
            (s.topic for s in self.manifests.kafka_sinks if s.name == name), DEFAULT_DEAD_LETTER_TOPIC
        )

    def _dead_letter(self, delivery: DeliverySpec | None) -> tuple[DeadLetterSink | None, str]:
        dest = delivery.dead_letter_sink if delivery else None
        if dest is None:
            return None, ""
        if dest.ref is not None and dest.ref.kind == "KafkaSink":
            return self.dead_letter_sink, self.kafka_sink_topic(dest.ref.name)
        return self._http_dls, self._resolve(dest)
