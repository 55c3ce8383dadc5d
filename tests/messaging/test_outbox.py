"""Outbox + Relay on real databases (SQLite and Postgres): transactional writes, publish-once, retry, claims.

Consumes `tasktide.messaging.outbox.Relay` with recording / failing publishers and the `outbox` table it
drains.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tasktide.db.engine import make_engine, session_factory
from tasktide.db.models import OutboxRow, TaskRow
from tasktide.db.outbox import (
    HANDOFF_INFO,
    NOTIFY_TOKEN,
    OUTBOX_CHANNEL,
    NotifyHandoff,
    notify_payload,
    records_of,
)
from tasktide.db.repository import TaskRepository
from tasktide.db.unit_of_work import SqlUnitOfWork
from tasktide.domain.tasks import new_task
from tasktide.messaging import events
from tasktide.messaging.outbox import OutboxListener, OutboxRecord, Relay, RelayWorker, enable_handoff
from tests.testenv import truncate_all


class RecordingPublisher:
    """Records every published record; optionally slow, to widen race windows between relays."""

    def __init__(self, delay: float = 0.0) -> None:
        self.records: list[OutboxRecord] = []
        self.delay = delay
        self._lock = threading.Lock()

    def publish(self, records: Sequence[OutboxRecord]) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.records.extend(records)


class FailingPublisher:
    def __init__(self) -> None:
        self.attempts = 0

    def publish(self, records: Sequence[OutboxRecord]) -> None:
        self.attempts += 1
        raise ConnectionError("broker unavailable")


class FlakyPublisher:
    """Fails the first `failures` calls, then records like `RecordingPublisher`."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inner = RecordingPublisher()
        self.calls = 0

    def publish(self, records: Sequence[OutboxRecord]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("broker unavailable")
        self.inner.publish(records)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def create_tasks(sessions: sessionmaker[Session], count: int, user: str = "alice") -> list[str]:
    """Create `count` tasks the way the API does (task + created event in one unit of work)."""
    ids = []
    with SqlUnitOfWork(sessions) as uow:
        repo = uow.tasks
        for n in range(count):
            task = new_task(user, {"title": f"task {n}"}, now=datetime.now(UTC))
            repo.add(task)
            repo.add_event(events.task_envelope(events.TASK_CREATED, task, actor=user))
            ids.append(str(task.id))
    return ids


def outbox_rows(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with sessions() as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def unsent(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        count: int = session.scalar(select(func.count(OutboxRow.id)).where(OutboxRow.sent_at.is_(None))) or 0
        return count


def test_outbox_state_change_commit_writes_rows_per_topic(sessions: sessionmaker[Session]) -> None:
    (task_id,) = create_tasks(sessions, 1)

    rows = outbox_rows(sessions)

    assert sorted(r.topic for r in rows) == ["task-events", "task-updates"]
    assert {r.key for r in rows} == {task_id}
    assert {r.type for r in rows} == {events.TASK_CREATED}
    assert len({r.event_id for r in rows}) == 1
    assert all(r.sent_at is None and r.claimed_until is None for r in rows)
    assert rows[0].event["subject"] == task_id and rows[0].event["partitionkey"] == task_id


def test_outbox_state_change_rollback_leaves_no_rows(sessions: sessionmaker[Session]) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), sessions() as session, session.begin():
        repo = TaskRepository(session)
        task = new_task("alice", {"title": "never"}, now=datetime.now(UTC))
        repo.add(task)
        repo.add_event(events.task_envelope(events.TASK_CREATED, task))
        session.flush()
        raise Boom

    assert outbox_rows(sessions) == []
    with sessions() as session:
        assert session.scalar(select(func.count(TaskRow.id))) == 0


def test_relay_run_once_publishes_each_row_once_and_marks_sent(sessions: sessionmaker[Session]) -> None:
    ids = create_tasks(sessions, 5)
    publisher = RecordingPublisher()
    relay = Relay(sessions, publisher, batch=3)

    sent = relay.run_once()
    again = relay.run_once()

    assert sent == 10 and again == 0
    assert len(publisher.records) == 10
    assert Counter((r.topic, r.key) for r in publisher.records) == Counter(
        {(topic, key): 1 for key in ids for topic in ("task-events", "task-updates")}
    )
    assert [r.id for r in publisher.records] == sorted(r.id for r in publisher.records)
    assert all(r.event["type"] == events.TASK_CREATED for r in publisher.records)
    assert all(row.sent_at is not None and row.claimed_until is None for row in outbox_rows(sessions))
    assert relay.update_backlog() == (0, 0.0)


def test_relay_failing_publisher_leaves_rows_unsent_and_later_run_publishes(
    sessions: sessionmaker[Session],
) -> None:
    create_tasks(sessions, 3)
    failing = FailingPublisher()

    with pytest.raises(ConnectionError):
        Relay(sessions, failing).run_once()

    assert failing.attempts == 1
    assert unsent(sessions) == 6
    assert all(row.claimed_until is None and row.claim_token is None for row in outbox_rows(sessions))
    assert Relay(sessions, failing).update_backlog()[0] == 6

    recording = RecordingPublisher()
    assert Relay(sessions, recording).run_once() == 6
    assert len(recording.records) == 6
    assert unsent(sessions) == 0


def test_relay_expired_lease_of_dead_relay_is_reclaimed(sessions: sessionmaker[Session]) -> None:
    create_tasks(sessions, 2)
    crashed = Relay(sessions, RecordingPublisher(), lease_seconds=0)
    _, claimed = crashed._claim()  # a relay that claims and then dies before publishing

    recording = RecordingPublisher()
    sent = Relay(sessions, recording).run_once()

    assert len(claimed) == 4
    assert sent == 4
    assert sorted(r.id for r in recording.records) == sorted(r.id for r in claimed)


def test_relay_stale_claim_cannot_mark_or_release_rows_reclaimed_since(
    sessions: sessionmaker[Session],
) -> None:
    create_tasks(sessions, 1)
    slow = Relay(sessions, RecordingPublisher(), lease_seconds=0)
    stale_token, stale = slow._claim()  # its lease expires at once
    fresh_token, fresh = Relay(sessions, RecordingPublisher(), lease_seconds=300)._claim()
    assert sorted(r.id for r in stale) == sorted(r.id for r in fresh)
    slow._release(stale, stale_token)
    slow._mark_sent(stale, stale_token)
    assert unsent(sessions) == 2  # still the fresh relay's, untouched by the stale one
    Relay(sessions, RecordingPublisher())._mark_sent(fresh, fresh_token)
    assert unsent(sessions) == 0


def test_relay_live_lease_is_not_stolen(sessions: sessionmaker[Session]) -> None:
    create_tasks(sessions, 2)
    Relay(sessions, RecordingPublisher(), lease_seconds=300)._claim()

    recording = RecordingPublisher()

    assert Relay(sessions, recording).run_once() == 0
    assert recording.records == []
    assert unsent(sessions) == 4


def test_relay_two_concurrent_relays_publish_every_row_exactly_once(sessions: sessionmaker[Session]) -> None:
    for _ in range(4):
        create_tasks(sessions, 50)  # 400 rows
    publisher = RecordingPublisher(delay=0.002)
    relays = [Relay(sessions, publisher, batch=7) for _ in range(2)]
    counts = [0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(n: int) -> None:
        try:
            start.wait()
            counts[n] = relays[n].run_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    published = Counter(r.id for r in publisher.records)
    assert errors == []
    assert len(published) == 400
    assert set(published.values()) == {1}
    assert sum(counts) == 400
    assert all(counts), f"both relays should have taken work, got {counts}"
    assert unsent(sessions) == 0


def test_relay_worker_kick_publishes_and_retries_after_failure(sessions: sessionmaker[Session]) -> None:
    create_tasks(sessions, 2)
    publisher = FlakyPublisher(failures=1)
    worker = RelayWorker(Relay(sessions, publisher), sweep_every=0.05)
    worker.start()
    try:
        worker.kick()
        deadline = time.monotonic() + 30
        while len(publisher.inner.records) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()

    assert publisher.calls >= 2
    assert len(publisher.inner.records) == 4
    assert unsent(sessions) == 0


class MeasuringRelay(Relay):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.measured: list[tuple[int, float]] = []

    def update_backlog(self) -> tuple[int, float]:
        backlog = super().update_backlog()
        self.measured.append(backlog)
        return backlog


def test_relay_worker_many_kicks_measure_the_backlog_once_after_them(sessions: sessionmaker[Session]) -> None:
    relay = MeasuringRelay(sessions, RecordingPublisher())
    worker = RelayWorker(relay, sweep_every=3600)
    worker.start()
    try:
        for _ in range(5):  # five commits, each kicking the relay, well within one BACKLOG_EVERY_S
            create_tasks(sessions, 1)
            worker.kick()
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while not relay.measured and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        worker.stop()

    assert unsent(sessions) == 0
    assert relay.measured == [(0, 0.0)]


def test_outbox_listener_postgres_notify_kicks_relay_without_waiting_for_sweep(postgres_url: str) -> None:
    """The `tasktide-relay` Service's mode: a create committed by another process is published at once
    (the sweep is an hour away), woken by the NOTIFY its unit of work sends after the commit."""
    from tasktide.services import Services
    from tasktide.settings import Settings
    from tests.testenv import truncate_all

    truncate_all(postgres_url)
    published: list[str] = []
    arrived = threading.Event()

    class Collecting:
        def publish(self, records: Sequence[OutboxRecord]) -> None:
            published.extend(r.topic for r in records)
            arrived.set()

    relay_side = Services.build(Settings(database_url=postgres_url, jwt_secret="s" * 32))
    api_side = Services.build(Settings(database_url=postgres_url, jwt_secret="s" * 32))
    try:
        relay_side.start_relay(Relay(relay_side.sessions, Collecting()), sweep_every=3600)
        relay_side.listen_outbox()
        task = new_task("alice", {"title": "notified"}, now=datetime.now(UTC))
        with api_side.unit_of_work() as uow:
            uow.tasks.add(task, events.task_envelope(events.TASK_CREATED, task))
        assert arrived.wait(20), "the relay was not woken by the outbox NOTIFY"
        assert sorted(published) == ["task-events", "task-updates"]
    finally:
        relay_side.close()
        api_side.close()


# -- hand-off: a process's own commits go to its worker without a claim query ------------------------------
class CountingRelay(Relay):
    """Counts claim queries, so a test can tell a hand-off from a sweep."""

    claims = 0

    def _claim(self) -> tuple[str, list[OutboxRecord]]:
        self.claims += 1
        return super()._claim()


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def handing_off(sessions: sessionmaker[Session]) -> Iterator[tuple[CountingRelay, RecordingPublisher]]:
    publisher = RecordingPublisher()
    relay = CountingRelay(sessions, publisher)
    worker = RelayWorker(relay, sweep_every=3600)  # no periodic sweep during the test
    enable_handoff(sessions, worker)
    worker.start()
    yield relay, publisher
    worker.stop()


def test_relay_worker_handoff_committed_rows_published_in_commit_order_without_claim(
    sessions: sessionmaker[Session], handing_off: tuple[CountingRelay, RecordingPublisher]
) -> None:
    relay, publisher = handing_off
    ids = [task_id for _ in range(3) for task_id in create_tasks(sessions, 2)]

    wait_for(lambda: unsent(sessions) == 0 and len(publisher.records) == 12)

    assert relay.claims == 0
    assert [r.key for r in publisher.records if r.topic == "task-events"] == ids
    assert sorted(Counter(r.topic for r in publisher.records).values()) == [6, 6]
    assert all(r.id is None for r in publisher.records)
    assert all(r.sent_at is not None and r.claimed_until is None for r in outbox_rows(sessions))


def test_relay_worker_handoff_rolled_back_transaction_publishes_nothing(
    sessions: sessionmaker[Session], handing_off: tuple[CountingRelay, RecordingPublisher]
) -> None:
    _relay, publisher = handing_off
    with pytest.raises(ZeroDivisionError), sessions() as session, session.begin():
        task = new_task("alice", {"title": "never"}, now=datetime.now(UTC))
        TaskRepository(session).add(task, events.task_envelope(events.TASK_CREATED, task))
        session.flush()
        raise ZeroDivisionError
    (kept,) = create_tasks(sessions, 1)

    wait_for(lambda: len(publisher.records) == 2 and unsent(sessions) == 0)  # published, then marked

    assert {r.key for r in publisher.records} == {kept}
    assert len(outbox_rows(sessions)) == 2 and unsent(sessions) == 0


def test_relay_worker_handoff_rolled_back_savepoint_drops_only_its_records(
    sessions: sessionmaker[Session], handing_off: tuple[CountingRelay, RecordingPublisher]
) -> None:
    _relay, publisher = handing_off
    task = new_task("alice", {"title": "once"}, now=datetime.now(UTC))
    created = events.task_envelope(events.TASK_CREATED, task)
    with sessions() as session, session.begin():
        repo = TaskRepository(session)
        repo.add(task, created)
        assert repo.add_event_once(created) is False  # the same event id again: its savepoint rolls back

    wait_for(lambda: unsent(sessions) == 0)

    assert sorted(r.topic for r in publisher.records) == ["task-events", "task-updates"]


def test_relay_worker_handoff_failed_publish_released_then_swept_in_order(
    sessions: sessionmaker[Session],
) -> None:
    publisher = FlakyPublisher(failures=1)
    relay = CountingRelay(sessions, publisher)
    worker = RelayWorker(relay, sweep_every=0.05)
    enable_handoff(sessions, worker)
    worker.start()
    try:
        ids = create_tasks(sessions, 1) + create_tasks(sessions, 1)
        wait_for(lambda: unsent(sessions) == 0 and len(publisher.inner.records) == 4)
    finally:
        worker.stop()

    assert publisher.calls >= 2
    assert [r.key for r in publisher.inner.records if r.topic == "task-events"] == ids
    assert all(r.sent_at is not None for r in outbox_rows(sessions))


def test_relay_worker_handoff_rows_of_a_process_that_died_are_swept_after_their_lease(
    sessions: sessionmaker[Session],
) -> None:
    dead = RelayWorker(Relay(sessions, RecordingPublisher(), lease_seconds=0))  # never started
    enable_handoff(sessions, dead)
    create_tasks(sessions, 1)  # written claimed by `dead`, whose lease lapses at once

    recording = RecordingPublisher()
    sent = Relay(sessions, recording).run_once()

    assert sent == 2 and unsent(sessions) == 0


# -- hand-off by NOTIFY: the cluster's API writes rows claimed for the relay, its NOTIFY carries them ------
def notify_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """`sessions` as the API has them on a cluster (`TASKTIDE_OUTBOX_NOTIFY_HANDOFF`)."""
    sessions.configure(info={HANDOFF_INFO: NotifyHandoff()})
    return sessions


def payload_of(sessions: sessionmaker[Session]) -> str:
    """The NOTIFY payload of the unsent rows, as the statement that wrote them carries it on Postgres."""
    unsent_rows = [r for r in outbox_rows(sessions) if r.sent_at is None]
    payload = notify_payload([{"topic": r.topic, "key": r.key, "event": r.event} for r in unsent_rows])
    assert payload is not None
    return payload


def libpq(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


@pytest.fixture
def postgres(postgres_url: str) -> str:
    """The worker's Postgres database, emptied (Postgres-only tests: NOTIFY, advisory locks)."""
    truncate_all(postgres_url)
    return postgres_url


def notify_until_sent(
    sessions: sessionmaker[Session], relay: Relay, payload: str, sweep_every: float
) -> None:
    """A started `RelayWorker` over `relay` is told of `payload`; returns once every row is sent."""
    worker = RelayWorker(relay, sweep_every=sweep_every)
    worker.start()
    try:
        worker.notified(payload)
        wait_for(lambda: unsent(sessions) == 0)
    finally:
        worker.stop()


def test_relay_worker_notified_rows_published_and_marked_sent_without_claim(
    sessions: sessionmaker[Session],
) -> None:
    ids = create_tasks(notify_sessions(sessions), 2)
    assert all(r.claim_token == NOTIFY_TOKEN and r.claimed_until is not None for r in outbox_rows(sessions))
    publisher = RecordingPublisher()
    relay = CountingRelay(sessions, publisher)
    notify_until_sent(sessions, relay, payload_of(sessions), sweep_every=3600)

    assert relay.claims == 0
    assert [r.key for r in publisher.records if r.topic == "task-events"] == ids
    assert all(r.sent_at is not None and r.claimed_until is None for r in outbox_rows(sessions))


def test_relay_worker_notified_failed_publish_released_then_swept(sessions: sessionmaker[Session]) -> None:
    ids = create_tasks(notify_sessions(sessions), 1)
    publisher = FlakyPublisher(failures=1)
    notify_until_sent(sessions, CountingRelay(sessions, publisher), payload_of(sessions), sweep_every=0.05)

    assert publisher.calls >= 2  # the notified publish failed, then a sweep claimed the released rows
    assert {r.key for r in publisher.inner.records} == set(ids)
    assert unsent(sessions) == 0


def test_relay_worker_notified_unreadable_payload_sweeps_instead(sessions: sessionmaker[Session]) -> None:
    ids = create_tasks(sessions, 1)  # unclaimed: a sweep takes them
    publisher = RecordingPublisher()
    relay = CountingRelay(sessions, publisher)
    notify_until_sent(sessions, relay, '{"not": "rows"}', sweep_every=3600)

    assert relay.claims >= 1
    assert {r.key for r in publisher.records} == set(ids)


@pytest.mark.parametrize("deferred", [False, True], ids=["transaction", "unit-of-work"])
def test_repository_notify_handoff_statement_notifies_its_rows_claimed_for_the_relay(
    postgres: str, deferred: bool
) -> None:
    import psycopg

    engine = make_engine(postgres)
    sessions = notify_sessions(session_factory(engine))
    task = new_task("alice", {"title": "by notify"}, now=datetime.now(UTC))
    created = events.task_envelope(events.TASK_CREATED, task)
    with psycopg.connect(libpq(postgres), autocommit=True) as conn:
        conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        with SqlUnitOfWork(sessions) as uow:
            if not deferred:  # a read first: the write goes in a transaction, its NOTIFY after the commit
                assert not uow.tasks.exists(task.user_id, task.id)
            uow.tasks.add(task, created)  # else the API's create: one statement, alone in autocommit
        (notification,) = list(conn.notifies(timeout=10, stop_after=1))
    rows = outbox_rows(sessions)
    engine.dispose()

    records = records_of(notification.payload)
    assert (
        sorted(r.topic for r in records) == sorted(r.topic for r in rows) == ["task-events", "task-updates"]
    )
    assert {r.event_id for r in records} == {created.id} and {r.key for r in records} == {str(task.id)}
    assert all(r.claim_token == NOTIFY_TOKEN for r in rows)


def test_repository_notify_handoff_rows_past_the_payload_limit_unclaimed_empty_payload(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from tasktide.db import outbox as outbox_table

    monkeypatch.setattr(outbox_table, "NOTIFY_PAYLOAD_MAX", 10)
    engine = make_engine(postgres)
    sessions = notify_sessions(session_factory(engine))
    with psycopg.connect(libpq(postgres), autocommit=True) as conn:
        conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        create_tasks(sessions, 1)
        (notification,) = list(conn.notifies(timeout=10, stop_after=1))
    rows = outbox_rows(sessions)
    engine.dispose()

    assert notification.payload == ""
    assert rows and all(r.claim_token is None and r.claimed_until is None for r in rows)  # a claim takes them


def test_outbox_listener_only_the_lock_holder_is_passed_payloads(postgres: str) -> None:
    import psycopg

    channel, key = f"tasktide_test_{uuid.uuid4().hex[:10]}", secrets.randbits(62)
    got: dict[int, list[str]] = {0: [], 1: []}
    listeners = [
        OutboxListener(libpq(postgres), got[i].append, channel=channel, lock_key=key) for i in (0, 1)
    ]
    for listener in listeners:
        listener.start()
    try:
        wait_for(lambda: all(got.values()) and [x.leader for x in listeners].count(True) == 1)
        with psycopg.connect(libpq(postgres), autocommit=True) as conn:
            conn.execute(f"NOTIFY {channel}, 'rows'")
            conn.execute(f"NOTIFY {channel}")
        leader = next(i for i, x in enumerate(listeners) if x.leader)
        wait_for(lambda: all(len(v) >= 2 for v in got.values()) and "rows" in got[leader])
    finally:
        for listener in listeners:
            listener.stop()

    assert got[leader] == ["", "rows", ""]
    assert got[1 - leader] == ["", ""]
