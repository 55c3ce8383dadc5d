"""Outbox relay: claims unsent outbox rows, publishes them, marks them sent.

Consumes: rows written by every state change (same transaction). Emits: the stored CloudEvents to their
topics through a `Publisher` (Kafka in Kafka mode and on the cluster, the in-process router when embedded).
Safe in several replicas at once: rows are claimed with a lease (`FOR UPDATE SKIP LOCKED` on Postgres,
`BEGIN IMMEDIATE` on SQLite); a relay that dies mid-batch leaves rows whose lease expires and are retried.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tasktide.db.models import OutboxRow
from tasktide.observability import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    topic: str
    key: str | None
    event: dict[str, Any]


class Publisher(Protocol):
    def publish(self, records: Sequence[OutboxRecord]) -> None:
        """Publish every record or raise; a raise leaves them unsent for the next attempt."""


def measure_backlog(sessions: sessionmaker[Session]) -> tuple[int, float]:
    """Unsent events and the age of the oldest, into the outbox gauges (also read at every API scrape,
    so a dead or scaled-to-zero relay still shows a growing age)."""
    with sessions() as session:
        count, oldest = session.execute(
            select(func.count(OutboxRow.id), func.min(OutboxRow.created_at)).where(
                OutboxRow.sent_at.is_(None)
            )
        ).one()
    age = 0.0
    if oldest is not None:
        oldest_dt = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - oldest_dt).total_seconds())
    metrics.OUTBOX_BACKLOG.set(count)
    metrics.OUTBOX_OLDEST_AGE.set(age)
    return int(count), age


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

    def run_once(self) -> int:
        """Publish until the outbox is empty (or a publish fails, which is raised); returns the count sent."""
        sent = 0
        try:
            while True:
                token, records = self._claim()
                if not records:
                    break
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
                sent += len(records)
        finally:
            self.update_backlog()
        return sent

    def update_backlog(self) -> tuple[int, float]:
        return measure_backlog(self.sessions)

    def _claim(self) -> tuple[str, list[OutboxRecord]]:
        now = datetime.now(UTC)
        token = uuid.uuid4().hex
        with self.sessions() as session, session.begin():
            candidates = (
                select(OutboxRow.id)
                .where(
                    OutboxRow.sent_at.is_(None),
                    or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
                )
                .order_by(OutboxRow.id)
                .limit(self.batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            rows = session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(candidates.scalar_subquery()))
                .values(claim_token=token, claimed_until=now + self.lease)
                .returning(OutboxRow.id, OutboxRow.topic, OutboxRow.key, OutboxRow.event)
                .execution_options(synchronize_session=False)
            ).all()
        return token, sorted((OutboxRecord(*row) for row in rows), key=lambda r: r.id)

    def _mark_sent(self, records: Sequence[OutboxRecord], token: str) -> None:
        with self.sessions() as session, session.begin():
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_([r.id for r in records]), OutboxRow.claim_token == token)
                .values(sent_at=datetime.now(UTC), claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    def _release(self, records: Sequence[OutboxRecord], token: str) -> None:
        with self.sessions() as session, session.begin():
            session.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id.in_([r.id for r in records]),
                    OutboxRow.sent_at.is_(None),
                    OutboxRow.claim_token == token,
                )
                .values(claimed_until=None, claim_token=None)
                .execution_options(synchronize_session=False)
            )


OUTBOX_CHANNEL = "tasktide_outbox"  # the repository NOTIFYs it in every statement writing outbox rows


class OutboxListener:
    """Postgres `LISTEN tasktide_outbox` on its own autocommit connection: every notification (sent at the
    commit of a transaction that wrote outbox rows) calls `on_notify`, e.g. a `RelayWorker.kick`, so a
    relay in another process publishes at once instead of at its next sweep. Reconnects after a failure;
    calls `on_notify` after every (re)connect, since notifications sent while it was away are lost."""

    def __init__(
        self, libpq_url: str, on_notify: Callable[[], None], *, channel: str = OUTBOX_CHANNEL
    ) -> None:
        self.url, self.on_notify, self.channel = libpq_url, on_notify, channel
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
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.on_notify()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.on_notify()
            except Exception as exc:
                log.warning("listening for outbox notifications failed, retrying: %s", exc)
                self._stopped.wait(1.0)


class RelayWorker:
    """Runs the relay on a background thread: at once when kicked after a commit, else every `sweep_every`."""

    def __init__(self, relay: Relay, *, sweep_every: float = 1.0, name: str = "outbox-relay") -> None:
        self.relay, self.sweep_every, self.name = relay, sweep_every, name
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            self._wake.wait(self.sweep_every if failures == 0 else min(30.0, self.sweep_every * 2**failures))
            self._wake.clear()
            if self._stopped.is_set():
                break
            try:
                self.relay.run_once()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("outbox relay failed (attempt %d), events stay queued: %s", failures, exc)
