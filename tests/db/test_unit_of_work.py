"""`tasktide.db.unit_of_work` on Postgres: the outbox NOTIFY goes after the commit, in a transaction of its
own with asynchronous commit (a NOTIFY inside the write would hold Postgres' cluster-wide NOTIFY lock
through the write's WAL flush), carries only what committed, and never fails a committed unit of work."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tasktide.db import repository
from tasktide.db.engine import make_engine, session_factory
from tasktide.db.outbox import HANDOFF_INFO, NOTIFY_SQL, OUTBOX_CHANNEL, NotifyHandoff, records_of
from tasktide.db.unit_of_work import SqlUnitOfWork
from tasktide.domain.tasks import Task, new_task
from tasktide.messaging import events
from tests.testenv import truncate_all

WAIT_S = 10.0  # upper bound for a notification to arrive; exceeding it fails, it is not a speed assertion


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    truncate_all(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """As the API's on a cluster: rows handed to the relay in the NOTIFY payload."""
    factory = session_factory(engine)
    factory.configure(info={HANDOFF_INFO: NotifyHandoff()})
    return factory


@pytest.fixture
def listener(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect("postgresql://" + postgres_url.split("://", 1)[1], autocommit=True) as conn:
        conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        yield conn


def statements(engine: Engine) -> list[str]:
    sent: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    return sent


def task(title: str = "notified") -> Task:
    return new_task("alice", {"title": title}, now=datetime.now(UTC))


def notified(listener: psycopg.Connection[Any], count: int = 1) -> list[set[str]]:
    """The event ids of the first ``count`` notifications, in the order they arrive."""
    got: list[set[str]] = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < count and time.monotonic() < deadline:
        for notification in listener.notifies(
            timeout=deadline - time.monotonic(), stop_after=count - len(got)
        ):
            got.append({r.event_id for r in records_of(notification.payload)})
    return got


@pytest.mark.parametrize("deferred", [True, False], ids=["create", "transaction"])
def test_unit_of_work_notify_after_commit_in_own_async_statement_not_in_the_write(
    engine: Engine, sessions: sessionmaker[Session], listener: psycopg.Connection[Any], deferred: bool
) -> None:
    sent = statements(engine)
    new = task()
    created = events.task_envelope(events.TASK_CREATED, new)
    with SqlUnitOfWork(sessions) as uow:
        if not deferred:
            assert not uow.tasks.exists(new.user_id, new.id)
        uow.tasks.add(new, created)

    assert notified(listener) == [{created.id}]
    writes = [s for s in sent if "INSERT INTO tasks" in s]
    assert len(writes) == 1 and "pg_notify" not in writes[0]
    assert sent[-1] == NOTIFY_SQL and "'synchronous_commit', 'off'" in NOTIFY_SQL
    assert sent.index(writes[0]) < len(sent) - 1


def test_unit_of_work_rolled_back_sends_nothing(
    sessions: sessionmaker[Session], listener: psycopg.Connection[Any]
) -> None:
    lost, kept = task("lost"), task("kept")
    with pytest.raises(RuntimeError), SqlUnitOfWork(sessions) as uow:
        assert not uow.tasks.exists(lost.user_id, lost.id)  # a read first: the write is in a transaction
        uow.tasks.add(lost, events.task_envelope(events.TASK_CREATED, lost))
        raise RuntimeError("the use case failed")
    kept_event = events.task_envelope(events.TASK_CREATED, kept)
    with SqlUnitOfWork(sessions) as uow:
        uow.tasks.add(kept, kept_event)

    assert notified(listener) == [{kept_event.id}]  # the first notification is the kept one's


def test_unit_of_work_savepoint_rolled_back_its_payload_never_sent(
    sessions: sessionmaker[Session], listener: psycopg.Connection[Any]
) -> None:
    first, second, third = (events.task_envelope(events.TASK_CREATED, task(n)) for n in ("1", "2", "3"))
    with SqlUnitOfWork(sessions) as uow:
        assert uow.tasks.add_event_once(first)
    with SqlUnitOfWork(sessions) as uow:
        assert uow.tasks.add_event_once(second)
        assert not uow.tasks.add_event_once(first)  # in the outbox already: its savepoint rolls back
    with SqlUnitOfWork(sessions) as uow:
        assert uow.tasks.add_event_once(third)

    assert notified(listener, 3) == [
        {first.id},
        {second.id},
        {third.id},
    ]  # the rolled-back write announced nothing


def test_unit_of_work_notify_failing_after_commit_logs_and_keeps_the_rows(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_args: Any) -> None:
        raise OperationalError("SELECT pg_notify", None, Exception("server closed the connection"))

    monkeypatch.setattr(repository, "send_notifies", refuse)
    new = task()
    with caplog.at_level(logging.WARNING, "tasktide.db.repository"), SqlUnitOfWork(sessions) as uow:
        uow.tasks.add(new, events.task_envelope(events.TASK_CREATED, new))

    with SqlUnitOfWork(sessions, read_only=True) as uow:
        assert uow.tasks.exists(new.user_id, new.id)  # committed: the relay's sweep publishes its rows
    assert "NOTIFY after commit failed" in caplog.text
