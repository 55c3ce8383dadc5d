"""Outbox relay: publishes the outbox rows every state change writes, and marks them sent.

Consumes: rows written by every state change (same transaction). Emits: the stored CloudEvents to their
topics through a `Publisher` (Kafka in Kafka mode and on the cluster, the in-process router when embedded).

Two ways in, both through `tasktide.db.outbox` (all the SQL is there):

- **Hand-off** (a process that writes and publishes, e.g. `tasktide dev`, a function, the API with
  `TASKTIDE_RELAY_IN_PROCESS`): :func:`enable_handoff` makes the process's sessions write their outbox rows
  already claimed by the `RelayWorker`, which publishes each committed transaction's records right after
  its commit, in the order the transactions wrote them, and marks them sent: no claim query.
- **Sweep** (`tasktide-relay`, on every NOTIFY and periodically; every worker periodically): claims unsent
  rows whose lease lapsed, publishes, marks. Safe in several replicas at once: rows are claimed with a lease
  (`FOR UPDATE SKIP LOCKED` on Postgres, `BEGIN IMMEDIATE` on SQLite); a relay that dies mid-batch (or a
  process that dies between commit and hand-off) leaves rows whose lease lapses, and a sweep retries them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tasktide.db.dbapi import pg_connect_options
from tasktide.db.outbox import (
    HANDOFF_INFO,
    NOTIFY_TOKEN,
    OUTBOX_CHANNEL,
    OutboxRecord,
    OutboxRepository,
    records_of,
)
from tasktide.observability import metrics

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = logging.getLogger(__name__)
SLOT_INFO = "tasktide.outbox.slot"  # Session.info key of the open transaction's hand-off slot
HEAD_WAIT_S = 5.0  # a transaction open this long after writing outbox rows no longer holds up the others
BACKLOG_EVERY_S = 1.0  # a RelayWorker measures the backlog at most this often (and this soon after a sweep)

__all__ = ["OUTBOX_CHANNEL", "OutboxListener", "OutboxRecord", "Publisher", "Relay", "RelayWorker"]


class Publisher(Protocol):
    def publish(self, records: Sequence[OutboxRecord]) -> None:
        """Publish every record or raise; a raise leaves them unsent for the next attempt."""


def measure_backlog(sessions: sessionmaker[Session]) -> tuple[int, float]:
    """Unsent events and the age of the oldest, into the outbox gauges (also read at every API scrape,
    so a dead or scaled-to-zero relay still shows a growing age)."""
    with sessions() as session:
        count, oldest = OutboxRepository(session).backlog()
    age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    metrics.OUTBOX_BACKLOG.set(count)
    metrics.OUTBOX_OLDEST_AGE.set(age)
    return count, age


class Relay:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        publisher: Publisher,
        *,
        batch: int = 200,
        lease_seconds: float = 30,
    ) -> None:
        self.sessions, self.publisher = sessions, publisher
        self.batch, self.lease = batch, timedelta(seconds=lease_seconds)
        # Every relay statement (claim, mark, release, backlog) is ONE statement, atomic on its own: on
        # Postgres it runs in autocommit, one round trip instead of BEGIN, statement, COMMIT.
        self.statements = sessions
        bind = sessions.kw.get("bind")
        if bind is not None and bind.dialect.name == "postgresql":
            from sqlalchemy.orm import sessionmaker as make_sessions

            self.statements = make_sessions(bind.execution_options(isolation_level="AUTOCOMMIT"))

    def run_once(self, *, measure: bool = True) -> int:
        """Publish until the outbox is empty (or a publish fails, which is raised); returns the count sent.
        Then (unless not ``measure``) measure the backlog into the outbox gauges.

        A claim that comes back short of a full batch found everything unsent and unclaimed, so no further
        (empty) claim follows: a row committed after it comes with its own wake-up (NOTIFY, hand-off or
        kick) or waits for the next sweep."""
        sent = 0
        try:
            while True:
                token, records = self._claim()
                if records:
                    self.publish(records, token)
                    sent += len(records)
                if len(records) < self.batch:
                    break
        finally:
            if measure:
                self.update_backlog()
        return sent

    def publish(self, records: Sequence[OutboxRecord], token: str) -> None:
        """Publish rows `token` holds and mark them sent; on a failure give them back, then raise."""
        started = time.perf_counter()
        try:
            self.publisher.publish(records)
        except Exception:
            self._release(records, token)
            raise
        metrics.RELAY_PUBLISH_SECONDS.observe(time.perf_counter() - started)
        self._mark_sent(records, token)
        for record in records:
            metrics.EVENTS_EMITTED.labels(str(record.event.get("type", "")), record.topic).inc()

    def update_backlog(self) -> tuple[int, float]:
        return measure_backlog(self.statements)

    def _claim(self) -> tuple[str, list[OutboxRecord]]:
        token = uuid.uuid4().hex
        with self.statements() as session:
            return token, OutboxRepository(session).claim(token, batch=self.batch, lease=self.lease)

    def _mark_sent(self, records: Sequence[OutboxRecord], token: str) -> None:
        with self.statements() as session:
            OutboxRepository(session).mark_sent(records, token)

    def _release(self, records: Sequence[OutboxRecord], token: str) -> None:
        with self.statements() as session:
            OutboxRepository(session).release(records, token)


NOTIFY_LEADER_LOCK = 0x7461736B74696465  # pg_try_advisory_lock key: the one relay that takes NOTIFY payloads


class OutboxListener:
    """Postgres `LISTEN tasktide_outbox` on its own autocommit connection: every notification (sent at the
    commit of a transaction that wrote outbox rows) calls `on_notify` with its payload, e.g. a
    `RelayWorker.notified`, so a relay in another process publishes at once instead of at its next sweep.
    Of several listening relays only the holder of the session advisory lock `NOTIFY_LEADER_LOCK` is
    passed payloads (the rows they carry are claimed for one relay); the others are told of empty ones only,
    and try for the lock every second. Reconnects after a failure; calls `on_notify("")` after every
    (re)connect, since notifications sent while it was away are lost."""

    def __init__(
        self,
        libpq_url: str,
        on_notify: Callable[[str], None],
        *,
        channel: str = OUTBOX_CHANNEL,
        lock_key: int = NOTIFY_LEADER_LOCK,
    ) -> None:
        self.url, self.on_notify, self.channel, self.lock_key = libpq_url, on_notify, channel, lock_key
        self.leader = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, **pg_connect_options(self.url)) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.leader = False
                    self.on_notify("")
                    while not self._stopped.is_set():
                        if not self.leader:
                            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,)).fetchone()
                            self.leader = bool(row and row[0])
                        for notification in conn.notifies(timeout=1.0):
                            if self.leader or not notification.payload:
                                self.on_notify(notification.payload)
            except Exception as exc:
                self.leader = False
                log.warning("listening for outbox notifications failed, retrying: %s", exc)
                self._stopped.wait(1.0)


@dataclass(eq=False)
class _Slot:
    """The outbox records one transaction wrote, each with the (sub)transaction that wrote it."""

    opened: float = field(default_factory=time.monotonic)
    state: Literal["open", "committed", "dropped", "abandoned"] = "open"
    entries: list[tuple[OutboxRecord, object]] = field(default_factory=list)

    @property
    def records(self) -> list[OutboxRecord]:
        return [record for record, _ in self.entries]


def _within(transaction: object, ancestor: object) -> bool:
    current: Any = transaction
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


class RelayWorker:
    """Runs the relay on a background thread: hand-offs as their transactions commit (see
    :func:`enable_handoff`), a sweep when kicked (a commit without hand-off, a NOTIFY) and every
    `sweep_every`. After a failed publish, hand-offs are given back to the sweep (in order) until a sweep
    succeeds, so per-key order holds through a broker outage. The backlog gauges are measured
    :data:`BACKLOG_EVERY_S` after a sweep, once for every sweep in between, so a relay woken by every
    commit does not add a count query to each (the API measures them at every scrape too)."""

    def __init__(self, relay: Relay, *, sweep_every: float = 1.0, name: str = "outbox-relay") -> None:
        self.relay, self.sweep_every, self.name = relay, sweep_every, name
        self.token = f"handoff-{uuid.uuid4().hex}"  # the claim every handed-off row is written with
        self.lease = relay.lease
        self._wake = threading.Event()
        self._sweep_due = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._slots: deque[_Slot] = deque()  # in the order the transactions first wrote outbox rows
        self._late: list[_Slot] = []  # abandoned slots that committed after all: give back, then sweep
        self._notified: list[OutboxRecord] = []  # rows NOTIFY payloads carried, claimed by NOTIFY_TOKEN
        self._degraded = False  # a publish failed: give hand-offs back until a sweep succeeds
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Sweep now (claim whatever is unsent)."""
        self._sweep_due.set()
        self._wake.set()

    def notified(self, payload: str) -> None:
        """An outbox NOTIFY (`OutboxListener`): publish the rows its payload carries (committed, claimed by
        `NOTIFY_TOKEN`), in the order notifications arrive; an empty or unreadable payload: sweep."""
        if not payload:
            self.kick()
            return
        try:
            records = records_of(payload)
        except ValueError as exc:
            log.warning("outbox notification ignored, sweeping instead: %s", exc)
            self.kick()
            return
        with self._lock:
            self._notified.extend(records)
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- hand-off (tasktide.db.outbox.HandoffSink, and the session events enable_handoff listens to) --------
    def written(self, session: Session, records: Sequence[OutboxRecord], within: object) -> None:
        with self._lock:
            slot: _Slot | None = session.info.get(SLOT_INFO)
            if slot is None:
                slot = session.info[SLOT_INFO] = _Slot()
                self._slots.append(slot)
            slot.entries.extend((record, within) for record in records)

    def _committed(self, session: Session) -> None:
        slot: _Slot | None = session.info.pop(SLOT_INFO, None)
        if slot is None:
            return
        with self._lock:
            if slot.state == "abandoned":
                self._late.append(slot)
                self._sweep_due.set()
            slot.state = "committed"
        self._wake.set()
        # Give up the GIL once, so the woken relay thread starts its publish now rather than after this
        # (request) thread's next switch interval (5 ms): a hand-off's latency is mostly that wait.
        time.sleep(0)

    def _rolled_back_savepoint(self, session: Session, transaction: SessionTransaction) -> None:
        slot: _Slot | None = session.info.get(SLOT_INFO)
        if slot is not None and transaction.nested:
            with self._lock:
                slot.entries = [(r, t) for r, t in slot.entries if not _within(t, transaction)]

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return
        slot: _Slot | None = session.info.pop(SLOT_INFO, None)  # still there: never committed
        if slot is not None:
            with self._lock:
                slot.state = "dropped"
            self._wake.set()

    def _ready(self) -> tuple[list[OutboxRecord], list[_Slot]]:
        """Records of the committed slots at the head of the queue (dropping rolled-back ones), in order;
        plus abandoned slots that committed late."""
        records: list[OutboxRecord] = []
        with self._lock:
            while self._slots:
                head = self._slots[0]
                if head.state == "open":
                    if time.monotonic() - head.opened < HEAD_WAIT_S:
                        break
                    head.state = "abandoned"  # its rows stay claimed until the lease lapses, or it commits
                if head.state == "committed":
                    records.extend(head.records)
                self._slots.popleft()
                if len(records) >= self.relay.batch:
                    break
            late, self._late = self._late, []
        return records, late

    def _hand_off(self) -> None:
        records, late = self._ready()
        with self._lock:
            notified, self._notified = self._notified, []
        for slot in late:
            self.relay._release(slot.records, self.token)
        failure: Exception | None = None
        for batch, token in ((records, self.token), (notified, NOTIFY_TOKEN)):
            if not batch:
                continue
            if self._degraded:  # also the batch after one that failed just now: back to the sweep
                self.relay._release(batch, token)
                self._sweep_due.set()
                continue
            try:
                self.relay.publish(batch, token)
            except Exception as exc:
                self._degraded, failure = True, exc
                self._sweep_due.set()
        if failure is not None:
            raise failure

    def _run(self) -> None:
        failures = 0
        next_sweep = time.monotonic() + self.sweep_every
        measure_at: float | None = None  # when the backlog of the sweeps since the last measure is measured
        while not self._stopped.is_set():
            timeout = max(0.0, next_sweep - time.monotonic())
            if measure_at is not None:
                timeout = min(timeout, max(0.0, measure_at - time.monotonic()))
            with self._lock:
                if self._slots and self._slots[0].state == "open":  # wake to abandon it if it stays open
                    timeout = min(timeout, max(0.0, self._slots[0].opened + HEAD_WAIT_S - time.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stopped.is_set():
                break
            try:
                self._hand_off()
                if self._sweep_due.is_set() or time.monotonic() >= next_sweep:
                    self._sweep_due.clear()
                    measure_at = measure_at or time.monotonic() + BACKLOG_EVERY_S  # failed sweeps too
                    self.relay.run_once(measure=False)
                    self._degraded = False
                    next_sweep = time.monotonic() + self.sweep_every
                failures = 0
            except Exception as exc:
                failures += 1
                self._sweep_due.clear()  # retried after the backoff (or at the next kick)
                next_sweep = time.monotonic() + min(30.0, self.sweep_every * 2**failures)
                log.warning("outbox relay failed (attempt %d), events stay queued: %s", failures, exc)
            if measure_at is not None and time.monotonic() >= measure_at:
                measure_at = None
                try:
                    self.relay.update_backlog()
                except Exception as exc:
                    log.warning("measuring the outbox backlog failed: %s", exc)


def enable_handoff(sessions: sessionmaker[Session], worker: RelayWorker) -> None:
    """Make every session of `sessions` hand the outbox rows it commits to `worker` (see the module
    docstring): they are written claimed by the worker, which publishes them after the commit."""
    from sqlalchemy import event

    sessions.configure(info={**sessions.kw.get("info", {}), HANDOFF_INFO: worker})
    event.listen(sessions, "after_commit", worker._committed)
    event.listen(sessions, "after_soft_rollback", worker._rolled_back_savepoint)
    event.listen(sessions, "after_transaction_end", worker._ended)
