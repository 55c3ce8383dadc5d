"""Repository contract: the same tests run against SQLite and real Postgres (`database_url` fixture)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from tasktide.db.engine import make_engine, session_factory
from tasktide.db.models import OutboxRow, ReminderRow, TaskTagRow
from tasktide.db.repository import (
    TASKS,
    TaskQuery,
    TaskRepository,
    _columns,
    _search_params,
    _search_statement,
    _SearchShape,
)
from tasktide.db.unit_of_work import SqlUnitOfWork
from tasktide.domain.errors import Conflict
from tasktide.domain.tasks import Task, new_task, revise_task, set_completed, task_fields
from tasktide.messaging.events import TASK_CREATED, task_envelope
from tests.testenv import truncate_all

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def make(user: str = "u1", **fields: object) -> Task:
    return new_task(user, {"title": "t", **fields}, now=NOW)


def store(sessions: sessionmaker[Session], task: Task) -> None:
    with sessions() as session, session.begin():
        TaskRepository(session).add(task)


def test_repository_add_then_get_round_trips_every_field(sessions: sessionmaker[Session]) -> None:
    task = make(
        priority="high",
        tags=["a", "b"],
        due_at="2030-03-02T09:00:00+01:00",
        timezone="Europe/Berlin",
        recurrence="FREQ=DAILY",
        reminders=["PT15M"],
    )
    store(sessions, task)
    with sessions() as session:
        loaded = TaskRepository(session).get("u1", task.id)
    assert loaded == task
    with sessions() as session:
        assert TaskRepository(session).get("someone-else", task.id) is None


def test_repository_save_stale_version_raises_conflict(sessions: sessionmaker[Session]) -> None:
    task = make()
    store(sessions, task)
    revised = revise_task(task, {**task_fields(task), "title": "v2"}, now=NOW)
    with sessions() as session, session.begin():
        TaskRepository(session).save(revised, expected_version=task.version)
    with pytest.raises(Conflict), sessions() as session, session.begin():
        TaskRepository(session).save(revised, expected_version=task.version)


def test_repository_add_occurrence_twice_inserts_once(sessions: sessionmaker[Session]) -> None:
    first = make(due_at="2030-03-02T09:00:00Z", recurrence="FREQ=DAILY")
    store(sessions, first)
    nxt = replace(first, id=uuid.uuid4(), occurrence=2)
    twin = replace(first, id=uuid.uuid4(), occurrence=2)
    with sessions() as session, session.begin():
        assert TaskRepository(session).add_occurrence(nxt) is True
    with sessions() as session, session.begin():
        assert TaskRepository(session).add_occurrence(twin) is False
    with sessions() as session:
        assert TaskRepository(session).series_has_occurrence(first.series_id, 2)


def test_repository_write_and_outbox_event_roll_back_together(sessions: sessionmaker[Session]) -> None:
    task = make()
    with pytest.raises(RuntimeError), sessions() as session, session.begin():
        repo = TaskRepository(session)
        repo.add(task)
        repo.add_event(task_envelope(TASK_CREATED, task))
        raise RuntimeError("boom")
    with sessions() as session:
        assert TaskRepository(session).get("u1", task.id) is None
        assert session.scalar(select(func.count(OutboxRow.id))) == 0


def test_repository_add_event_writes_one_row_per_topic(sessions: sessionmaker[Session]) -> None:
    task = make()
    with sessions() as session, session.begin():
        repo = TaskRepository(session)
        repo.add(task)
        repo.add_event(task_envelope(TASK_CREATED, task))
    with sessions() as session:
        topics = sorted(session.scalars(select(OutboxRow.topic)))
    assert topics == ["task-events", "task-updates"]


def test_repository_search_filters_and_sorts(sessions: sessionmaker[Session]) -> None:
    store(sessions, make(title="b", priority="low", tags=["x"], due_at="2030-03-05T00:00:00Z"))
    store(sessions, make(title="a", priority="high", tags=["x", "y"], due_at="2030-03-03T00:00:00Z"))
    store(sessions, make(title="c"))
    store(sessions, make("u2", title="other"))
    with sessions() as session:
        repo = TaskRepository(session)

        def titles(**query: object) -> list[str]:
            return [t.title for t in repo.search("u1", TaskQuery(**query), now=NOW)]  # type: ignore[arg-type]

        assert titles(sort="due_at") == ["a", "b", "c"]
        assert titles(sort="-due_at") == ["b", "a", "c"]
        assert titles(sort="priority") == ["c", "b", "a"]  # ascending: none < low < high
        assert titles(sort="-priority") == ["a", "b", "c"]  # descending: high first
        assert titles(tags=("x", "y")) == ["a"]
        assert titles(q="B") == ["b"]
        assert titles(sort="title", limit=2, offset=1) == ["b", "c"]


def test_repository_search_same_shape_other_values_finds_each_its_own(
    sessions: sessionmaker[Session],
) -> None:
    # one statement per filter shape is built and reused: the values must come from each query
    store(sessions, make(title="home", priority="low", tags=["home"], due_at="2030-03-05T00:00:00Z"))
    store(sessions, make(title="work", priority="high", tags=["work"], due_at="2030-04-05T00:00:00Z"))
    store(sessions, make("u2", title="other", priority="low", tags=["home"], due_at="2030-03-05T00:00:00Z"))
    with sessions() as session:
        repo = TaskRepository(session)

        def titles(user: str, **query: object) -> list[str]:
            return [t.title for t in repo.search(user, TaskQuery(**query), now=NOW)]  # type: ignore[arg-type]

        assert titles("u1", tags=("home",), priorities=("low",)) == ["home"]
        assert titles("u1", tags=("work",), priorities=("high",)) == ["work"]
        assert titles("u1", tags=("work",), priorities=("low", "high")) == ["work"]
        assert titles("u2", tags=("home",), priorities=("low",)) == ["other"]
        assert titles("u1", due_from=datetime(2030, 4, 1, tzinfo=UTC), q="WO") == ["work"]
        assert titles("u1", due_from=datetime(2030, 3, 1, tzinfo=UTC), q="ho") == ["home"]
        assert titles("u1", status="completed") == []
        assert titles("u1", status="pending", limit=1, offset=1, sort="title") == ["work"]


def test_repository_reminders_follow_due_date_and_status(sessions: sessionmaker[Session]) -> None:
    task = make(due_at="2030-03-02T09:00:00Z", reminders=["PT15M", "P1D"])
    store(sessions, task)
    with sessions() as session:
        assert [o for o, _ in TaskRepository(session).pending_reminders(task.id)] == ["P1D", "PT15M"]
    moved = revise_task(task, {**task_fields(task), "due_at": "2030-03-04T09:00:00Z"}, now=NOW)
    with sessions() as session, session.begin():
        TaskRepository(session).save(moved, expected_version=task.version)
    with sessions() as session:
        remind_at = dict(TaskRepository(session).pending_reminders(task.id))
    assert remind_at["PT15M"] == datetime(2030, 3, 4, 8, 45, tzinfo=UTC)
    done = set_completed(moved, True, now=NOW)
    with sessions() as session, session.begin():
        TaskRepository(session).save(done, expected_version=moved.version)
    with sessions() as session:
        assert TaskRepository(session).pending_reminders(task.id) == []


def test_repository_claim_due_reminders_claims_each_once(sessions: sessionmaker[Session]) -> None:
    due = make(due_at="2030-03-01T12:10:00Z", reminders=["PT15M"])  # remind 11:55, already due at NOW
    later = make(due_at="2030-03-09T12:00:00Z", reminders=["PT15M"])
    store(sessions, due)
    store(sessions, later)
    with sessions() as session, session.begin():
        claimed = TaskRepository(session).claim_due_reminders(NOW)
    assert [c.task_id for c in claimed] == [due.id]
    with sessions() as session, session.begin():
        assert TaskRepository(session).claim_due_reminders(NOW) == []


def test_repository_claim_due_reminders_takes_at_most_the_limit(sessions: sessionmaker[Session]) -> None:
    """On Postgres `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` claimed every due reminder (the
    semi-join re-ran the subquery per row); the claim is a materialised CTE now."""
    for i in range(5):
        store(sessions, make(title=f"t{i}", due_at="2030-03-01T12:30:00Z", reminders=["PT45M"]))
    with sessions() as session, session.begin():
        repo = TaskRepository(session)
        assert [len(repo.claim_due_reminders(NOW, limit=2)) for _ in range(4)] == [2, 2, 1, 0]


def test_repository_concurrent_claims_never_share_a_reminder(sessions: sessionmaker[Session]) -> None:
    for i in range(60):
        store(sessions, make(title=f"t{i}", due_at="2030-03-01T12:30:00Z", reminders=["PT45M"]))
    results: list[list[uuid.UUID]] = []
    lock = threading.Lock()

    def scanner() -> None:
        mine: list[uuid.UUID] = []
        for _ in range(10):
            with sessions() as session, session.begin():
                mine += [c.id for c in TaskRepository(session).claim_due_reminders(NOW, limit=7)]
        with lock:
            results.append(mine)

    threads = [threading.Thread(target=scanner) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [rid for mine in results for rid in mine]
    assert len(claimed) == 60 and len(set(claimed)) == 60


def test_repository_due_scan_uses_partial_index(sessions: sessionmaker[Session], database_url: str) -> None:
    """The scan costs O(due reminders): the planner walks the partial index of unfired reminders."""
    if database_url.startswith("postgresql"):
        task = make(due_at="2030-03-02T09:00:00Z")
        store(sessions, task)
        fired = [
            {"id": uuid.uuid4(), "task_id": task.id, "user_id": "u1", "offset": f"PT{i}S", "remind_at": NOW,
             "due_at": NOW, "fired_at": NOW if i % 1000 else None}
            for i in range(1, 20_001)
        ]  # fmt: skip
        with sessions() as session, session.begin():
            session.execute(insert(ReminderRow), fired)
        with sessions() as session, session.begin():
            session.execute(text("ANALYZE reminders"))
            plan = "\n".join(
                session.scalars(
                    text(
                        "EXPLAIN SELECT id FROM reminders WHERE fired_at IS NULL AND remind_at <= :now "
                        "ORDER BY remind_at LIMIT 500 FOR UPDATE SKIP LOCKED"
                    ),
                    {"now": NOW},
                )
            )
        assert "ix_reminders_due_unfired" in plan, plan
    else:
        with sessions() as session:
            rows = session.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM reminders "
                    "WHERE fired_at IS NULL AND remind_at <= '2030-01-01'"
                )
            ).all()
        assert any("ix_reminders_due_unfired" in str(row[-1]) for row in rows), rows


def test_repository_reminder_rows_removed_with_task(sessions: sessionmaker[Session]) -> None:
    task = make(due_at="2030-03-02T09:00:00Z", reminders=["PT15M"])
    store(sessions, task)
    with sessions() as session, session.begin():
        TaskRepository(session).delete(task)
    with sessions() as session:
        assert session.scalar(select(func.count(ReminderRow.id))) == 0


def test_repository_time_columns_are_aware_utc(sessions: sessionmaker[Session]) -> None:
    task = make(due_at="2030-03-02T09:00:00-05:00")
    store(sessions, task)
    with sessions() as session:
        loaded = TaskRepository(session).get("u1", task.id)
    assert loaded is not None and loaded.due_at == datetime(2030, 3, 2, 14, 0, tzinfo=UTC)
    assert loaded.due_at.utcoffset() == timedelta(0)


def _statements(sessions: sessionmaker[Session]) -> list[str]:
    """Every statement the sessions' engine sends from now on (appended as they run)."""
    from sqlalchemy import event

    sent: list[str] = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: sent.append(sql))
    return sent


def test_repository_add_with_event_writes_every_row_in_one_statement_on_postgres(
    sessions: sessionmaker[Session],
) -> None:
    task = make(tags=["a", "b"], due_at="2030-03-02T09:00:00Z", reminders=["PT15M", "PT1H"])
    sent = _statements(sessions)
    with sessions() as session, session.begin():
        TaskRepository(session).add(task, task_envelope(TASK_CREATED, task))
    postgres = sessions.kw["bind"].dialect.name == "postgresql"
    writes = [sql for sql in sent if not sql.startswith("BEGIN")]
    assert len(writes) == (1 if postgres else 4)  # SQLite: task, tags, reminders, outbox (executemany each)
    with sessions() as session:
        assert TaskRepository(session).get("u1", task.id) == task
        assert TaskRepository(session).pending_reminders(task.id) == [
            ("PT1H", datetime(2030, 3, 2, 8, 0, tzinfo=UTC)),
            ("PT15M", datetime(2030, 3, 2, 8, 45, tzinfo=UTC)),
        ]
        events = session.scalars(select(OutboxRow.topic).where(OutboxRow.key == str(task.id))).all()
        tags = session.scalars(select(TaskTagRow.tag).where(TaskTagRow.task_id == task.id)).all()
    assert sorted(events) == ["task-events", "task-updates"]
    assert sorted(tags) == ["a", "b"]


def test_repository_add_on_postgres_notifies_the_relay_after_commit(postgres_url: str) -> None:
    """Postgres only: SQLite has no NOTIFY (there the relay runs in process and is kicked after commit)."""
    import psycopg

    database_url = postgres_url
    listener = psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True)
    try:
        listener.execute("LISTEN tasktide_outbox")
        engine = make_engine(database_url)
        task = make()
        with SqlUnitOfWork(session_factory(engine)) as uow:
            uow.tasks.add(task, task_envelope(TASK_CREATED, task))
        engine.dispose()
        notices = list(listener.notifies(timeout=10, stop_after=1))
    finally:
        listener.close()
    assert [n.channel for n in notices] == ["tasktide_outbox"]


def test_repository_list_by_due_date_walks_an_index_on_postgres(postgres_url: str) -> None:
    """A page by due date reads a page of rows in index order (an Incremental Sort of ties at most), never a
    sort of all the user's rows: with a leading `due_at IS NULL` key it did (10 ms at 8,000 tasks)."""
    truncate_all(postgres_url)
    engine = make_engine(postgres_url)
    tasks = [make(due_at=f"2030-{1 + i % 12:02d}-{1 + i % 28:02d}T09:00:00Z") for i in range(3000)]
    try:
        with engine.begin() as conn:
            conn.execute(insert(TASKS), [{"id": task.id, **_columns(task)} for task in tasks])
            conn.exec_driver_sql("ANALYZE tasks")
        for query in (TaskQuery(status="pending", sort="due_at"), TaskQuery(sort="due_at")):
            stmt = _search_statement(_SearchShape.of(query)).compile(dialect=engine.dialect)
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("EXPLAIN " + stmt.string, _search_params("u1", query, NOW)).all()
            plan = "\n".join(row[0] for row in rows)
            assert "Index Scan" in plan, plan
            assert not any(line.strip().startswith("->  Sort") for line in plan.splitlines()), plan
    finally:
        engine.dispose()
        truncate_all(postgres_url)
