"""KafkaSource consumers (Kafka mode): records of a Kafka topic handed to the broker as CloudEvents.

Consumes Kafka records (one kafka-python ``KafkaConsumer`` per KafkaSource, in a background thread,
``enable_auto_commit=False``) and hands each as a CloudEvent to ``dispatch`` on the runtime's event loop, as
the Kafka Broker's dispatcher does (eventing-kafka-broker ``UnorderedConsumerVerticle`` + ``OffsetManager``):

- **Many records in flight.** Every polled record is dispatched at once, up to ``max_in_flight`` per
  consumer (the dispatcher's ``max.poll.records`` bound); past it the consumer waits for one to finish,
  polling only to stay in its group. A record that is retrying (a Trigger's backoff) holds back nothing but
  its own Trigger's ordered lane: unordered Triggers get the records behind it at once.
- **Offsets committed up to the lowest record not yet finished** in each partition (asynchronously, once
  per poll loop, never between two deliveries), so a crash or restart redelivers what was in flight and
  never skips it. Finished means delivered, dead-lettered or dropped by every Trigger.
- **Ordered** (``spec.ordering: ordered``) with a sink that is no Broker: one record at a time per
  partition, the next only once the previous finished. With a Broker sink the record is appended to the
  (emulated) Broker topic in partition order before ``dispatch`` first awaits, and each Trigger's own
  ``delivery.order`` annotation decides from there, as on a cluster where the Broker ingress answers the
  source at once.
- A record whose dispatch raised (e.g. :class:`~tasktide.router.broker.DeliveryFailed`: a dead-letter sink
  that did not take it) stays unfinished and is dispatched again after a bounded exponential backoff
  (``retry_backoff * 2^(n-1)``, at most ``max_retry_backoff``). The real dispatcher commits past a record
  whose dead letter failed (it is lost); the local runtime keeps it.
- On a rebalance, what is finished is committed for the revoked partitions; a partition assigned back
  keeps its in-flight records (the consumer seeks past them), any other's are left to the new owner. A
  consumer that cannot connect, or whose poll or commit fails, waits for its in-flight records, is closed
  and rebuilt after a backoff, until ``stop()``; ``stop()`` cancels what is in flight (redelivered later).

Emits, every few seconds, ``tasktide_kafka_consumer_lag{group,topic}`` (end offsets minus positions of
assigned partitions).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from tasktide.messaging import codec
from tasktide.messaging.kafka_client import BOOTSTRAP_TIMEOUT_SETTING, CONSUMER_FETCH_SETTINGS
from tasktide.observability import metrics
from tasktide.router.manifests import KafkaSource

log = logging.getLogger(__name__)

Dispatch = Callable[..., Coroutine[Any, Any, None]]  # (topic, event, *, traceparent: str | None)
ConsumerFactory = Callable[
    ..., Any
]  # (**KafkaConsumer settings) -> an unsubscribed KafkaConsumer-like object
BOOTSTRAP_TIMEOUT_MS = 5000
# The cluster's dispatcher bounds its in-flight records by `max.poll.records` (50 in Knative's
# config-kafka-broker-data-plane), and so does this one. A burst of 300 events through HTTP
# (tests/router/head_of_line) runs at 707-840/s with 50 in flight and 760-798/s with 16. With the httpx client
# the router used before aiohttp, the same burst ran at 34-35/s with 50 and 83-129/s with 16: its pool
# bookkeeping grew with the pool, and the bound was 16 then.
DEFAULT_MAX_IN_FLIGHT = 50
BUSY_POLL_MS = 5  # poll timeout while ordered records wait behind one in flight
FULL_POLL_EVERY = (
    30.0  # seconds: a consumer at max_in_flight still polls this often (max.poll.interval.ms 300 s)
)


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


@dataclass(eq=False)
class _Partition:
    """One assigned partition: its records not yet finished, and the offsets around them."""

    next_offset: int  # one past the highest offset taken in
    committed: int  # the last offset committed (or the position consumption started from)
    pending: dict[int, Any] = field(default_factory=dict)  # offset -> record, dispatched or queued
    queued: deque[Any] = field(default_factory=deque)  # ordered: records behind the one in flight
    busy: bool = False  # ordered: a record of this partition is in flight
    failures: dict[int, int] = field(default_factory=dict)  # offset -> failed dispatches in a row

    def commit_position(self) -> int:
        """The offset to commit: the lowest record not finished, else one past the last taken in."""
        return min(self.pending) if self.pending else self.next_offset


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaSourceConsumer, consumer: Any) -> None:
        self._owner, self._consumer = owner, consumer

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self._owner._revoked(self._consumer, set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self._owner._assigned(self._consumer, set(assigned))


class KafkaSourceConsumer:
    """One KafkaSource: a consumer thread feeding ``dispatch`` on ``loop`` (see the module docstring).

    ``consumer_factory`` (default ``kafka.KafkaConsumer``) is called with the consumer settings each time a
    consumer is (re)built; the source's topics are subscribed to afterwards. ``retry_backoff`` and
    ``max_retry_backoff`` bound the waits (seconds) before reconnecting and before re-dispatching a failed
    record; ``max_in_flight`` bounds the records dispatched and not finished; ``ordered`` (default: the
    source is ordered and its sink is no Broker) dispatches one record at a time per partition.
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
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        ordered: bool | None = None,
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
        self.max_in_flight = max(1, max_in_flight)
        sink = source.sink.ref
        to_broker = sink is not None and sink.kind == "Broker"
        self.ordered = ordered if ordered is not None else source.ordered and not to_broker
        self._connect_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.polls = 0  # times round the poll loop (tests watch it)
        # consumer-thread state, reset for every consumer built
        self._partitions: dict[Any, _Partition] = {}
        self._held: dict[Any, _Partition] = {}  # revoked, kept in case the rebalance assigns them back
        self._in_flight: dict[concurrent.futures.Future[None], tuple[_Partition, Any]] = {}
        self._done: queue.SimpleQueue[concurrent.futures.Future[None]] = queue.SimpleQueue()
        self._wake = threading.Event()  # set whenever a dispatch finishes
        self._polled = 0.0  # when the consumer last polled
        self._paused = False
        self._retries: list[tuple[float, int, _Partition, Any]] = []  # heap of (due, seq, partition, record)
        self._seq = itertools.count()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"kafkasource-{self.source.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def in_flight(self) -> int:
        """Records taken in and not finished (dispatched, queued behind an ordered one, or awaiting retry)."""
        return sum(len(p.pending) for p in self._partitions.values())

    # -- the consumer thread -----------------------------------------------------------------------------
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
            **CONSUMER_FETCH_SETTINGS,
        }
        if factory is None:
            from kafka import KafkaConsumer

            factory = KafkaConsumer
            settings[BOOTSTRAP_TIMEOUT_SETTING] = BOOTSTRAP_TIMEOUT_MS  # keeps stop() prompt
        return factory(**settings)

    def _consume(self) -> None:
        """Build a consumer and poll until stopped; raises whatever breaks it (closed either way)."""
        self._partitions, self._held, self._retries = {}, {}, []
        self._polled, self._paused = time.monotonic(), False
        consumer = self._new_consumer()
        try:
            consumer.subscribe(list(self.source.topics), listener=_Rebalance(self, consumer))
            while not self._stop.is_set():
                self._settle(consumer)
                batches = self._poll(consumer)
                self.polls += 1
                self._connect_failures = 0
                self.ready.set()
                self._report_lag(consumer)
                for records in batches.values():
                    self._take(consumer, records)
        finally:
            self._shut(consumer)

    def _poll(self, consumer: Any) -> dict[Any, list[Any]]:
        """Poll for as many records as there is room for. Full: wait until a dispatch finishes (or a retry
        is due) without polling, so the records already fetched stay buffered; full for longer than
        :data:`FULL_POLL_EVERY`, pause every partition and poll anyway, so the group keeps the consumer
        (``max.poll.interval.ms``) and rebalances go on."""
        wait_ms = self._poll_timeout_ms
        if self._retries:
            wait_ms = min(wait_ms, max(0, int((self._retries[0][0] - time.monotonic()) * 1000)))
        room = self.max_in_flight - self.in_flight
        if room <= 0:
            self._wake.wait(wait_ms / 1000)
            self._wake.clear()
            if time.monotonic() - self._polled < FULL_POLL_EVERY:
                return {}
            consumer.pause(*consumer.assignment())  # pausing drops what the consumer had fetched for them
            self._paused = True
            self._polled = time.monotonic()
            full: dict[Any, list[Any]] = consumer.poll(timeout_ms=0, max_records=1)
            return full
        if self._paused:
            consumer.resume(*consumer.paused())
            self._paused = False
        if self.ordered and any(p.queued for p in self._partitions.values()):
            wait_ms = min(wait_ms, BUSY_POLL_MS)  # a finished record lets the next of its partition go
        batches: dict[Any, list[Any]] = consumer.poll(timeout_ms=wait_ms, max_records=room)
        self._polled = time.monotonic()
        return batches

    def _take(self, consumer: Any, records: list[Any]) -> None:
        """Take in a partition's polled records, in offset order, while there is room; the consumer seeks
        back to the first one without room, to poll it again later."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            part = self._partitions.get(tp)
            if part is None:
                part = self._partitions[tp] = _Partition(record.offset, record.offset)
            if record.offset < part.next_offset:
                continue  # already taken in (fetched again after a rebalance)
            if self._stop.is_set() or self.in_flight >= self.max_in_flight:
                consumer.seek(tp, record.offset)
                return
            part.pending[record.offset] = record
            part.next_offset = record.offset + 1
            if self.ordered and part.busy:
                part.queued.append(record)
            else:
                self._send(part, record)

    def _send(self, part: _Partition, record: Any) -> None:
        try:
            event = codec.from_kafka_record(
                record.key, record.headers or [], record.value or b"", raw_data=True
            )
        except codec.InvalidEvent:
            event = wrap_raw_record(
                self.source, record.topic, record.partition, record.offset, record.value or b""
            )
        traceparent = record_traceparent(record.headers or [])
        part.busy = True
        future = asyncio.run_coroutine_threadsafe(
            self._dispatch(record.topic, event, traceparent=traceparent), self._loop
        )
        self._in_flight[future] = (part, record)
        future.add_done_callback(self._completed)

    def _completed(self, future: concurrent.futures.Future[None]) -> None:  # on the event loop's thread
        self._done.put(future)
        self._wake.set()

    def _settle(self, consumer: Any) -> None:
        """Account for finished dispatches, re-dispatch the due retries, commit what advanced."""
        for future, (part, record) in self._finished_dispatches():
            if self._owner_of(record) is not part:
                continue  # revoked meanwhile: the partition's new owner delivers it again
            error = _error(future)
            if error is None:
                self._finished(part, record)
            else:
                self._failed(part, record, error)
        now = time.monotonic()
        while self._retries and self._retries[0][0] <= now:
            _, seq, part, record = heapq.heappop(self._retries)
            if self._owner_of(record) is not part:
                continue
            tp = TopicPartition(record.topic, record.partition)
            if self._partitions.get(tp) is part:
                self._send(part, record)
            else:  # revoked, perhaps assigned back by the rebalance under way: look again later
                heapq.heappush(self._retries, (now + BUSY_POLL_MS / 1000, seq, part, record))
                break
        self._commit(consumer, self._partitions)

    def _owner_of(self, record: Any) -> _Partition | None:
        """The state of ``record``'s partition while it is ours (or revoked by a rebalance under way)."""
        tp = TopicPartition(record.topic, record.partition)
        return self._partitions.get(tp) or self._held.get(tp)

    def _finished(self, part: _Partition, record: Any) -> None:
        del part.pending[record.offset]
        part.failures.pop(record.offset, None)
        part.busy = False
        if part.queued:
            self._send(part, part.queued.popleft())

    def _failed(self, part: _Partition, record: Any, error: BaseException) -> None:
        """Keep the record unfinished, dispatch it again after a backoff (ordered: nothing overtakes it)."""
        failures = part.failures[record.offset] = part.failures.get(record.offset, 0) + 1
        delay = retry_delay(failures, self._retry_backoff, self._max_retry_backoff)
        log.error(
            "KafkaSource %s: dispatch of %s[%d]@%d failed (attempt %d), retrying in %.1fs: %s",
            self.source.name,
            record.topic,
            record.partition,
            record.offset,
            failures,
            delay,
            error,
        )
        heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), part, record))

    def _commit(self, consumer: Any, partitions: dict[Any, _Partition], *, wait: bool = False) -> None:
        """Commit, for each partition, the offset of its lowest unfinished record (if that advanced).

        Asynchronous unless ``wait``: deliveries never wait for the coordinator's answer; commits of a
        partition complete in order, and one lost in a crash only means its records are delivered again
        (every consumer is idempotent)."""
        advanced = {tp: (part, part.commit_position()) for tp, part in partitions.items()}
        advanced = {tp: (part, at) for tp, (part, at) in advanced.items() if at > part.committed}
        if not advanced:
            return
        offsets = {tp: OffsetAndMetadata(at, "", -1) for tp, (_, at) in advanced.items()}
        if wait:
            consumer.commit(offsets)
        else:
            consumer.commit_async(offsets)
        for part, at in advanced.values():
            part.committed = at

    # -- rebalances (called by the consumer inside poll) -------------------------------------------------
    def _revoked(self, consumer: Any, revoked: set[Any]) -> None:
        leaving = {tp: part for tp, part in self._partitions.items() if tp in revoked}
        try:
            self._settle(consumer)
            self._commit(consumer, leaving, wait=True)
        except Exception as exc:
            log.warning("KafkaSource %s: commit on revocation failed: %s", self.source.name, exc)
        finally:  # whatever happened, nothing more is committed for them unless they are assigned back
            for tp in leaving:
                self._held[tp] = self._partitions.pop(tp)

    def _assigned(self, consumer: Any, assigned: set[Any]) -> None:
        for tp, part in self._held.items():
            if tp in assigned:  # ours again: keep its records in flight, resume after them
                self._partitions[tp] = part
                consumer.seek(tp, part.next_offset)
        self._held = {}

    # -- shutting a consumer down ------------------------------------------------------------------------
    def _shut(self, consumer: Any) -> None:
        """Stopping: cancel what is in flight. Broken: wait for it (so that the next consumer does not
        deliver the same records alongside). Either way commit what finished, then close."""
        while self._in_flight and not self._stop.is_set():
            self._drain_finished()
            self._stop.wait(BUSY_POLL_MS / 1000)
        for future in list(self._in_flight):
            future.cancel()
        self._drain_finished()
        try:
            self._commit(consumer, self._partitions, wait=True)
        except Exception as exc:
            log.debug("KafkaSource %s: final commit failed: %s", self.source.name, exc)
        self._in_flight.clear()
        self._retries = []
        try:
            consumer.close(autocommit=False)
        except Exception as exc:
            log.debug("KafkaSource %s: closing the consumer failed: %s", self.source.name, exc)

    def _finished_dispatches(
        self,
    ) -> Iterator[tuple[concurrent.futures.Future[None], tuple[_Partition, Any]]]:
        """Each dispatch finished since the last call, with its partition and record, taken off the books
        (those of a consumer already shut are dropped)."""
        while True:
            try:
                future = self._done.get_nowait()
            except queue.Empty:
                return
            entry = self._in_flight.pop(future, None)
            if entry is not None:
                yield future, entry

    def _drain_finished(self) -> None:
        for future, (part, record) in self._finished_dispatches():
            if _error(future) is None:
                part.pending.pop(record.offset, None)

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


def _error(future: concurrent.futures.Future[None]) -> BaseException | None:
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception()
