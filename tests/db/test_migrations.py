"""Migrations on real databases: 0002 anchors every existing series at its first stored occurrence; 0004,
and every upgrade to head after it, give tags their task's user (in batches); the head schema is the
models'; a database a later release migrated is left alone; a concurrent index build a failed try left
behind is rebuilt (SQLite and Postgres)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from tasktide.db import repairs
from tasktide.db.engine import make_engine
from tasktide.db.migrate import MigrationLocked, alembic_config, upgrade
from tasktide.db.models import Base
from tests.testenv import blank_database, fresh_database


@pytest.fixture(params=["sqlite", "postgres"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own: migrations run from nothing, on SQLite and on real Postgres."""
    with blank_database(request, tmp_path, "migrations") as url:
        yield url


def _scalar(url: str, sql: str) -> object:
    engine = make_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar()
    engine.dispose()
    return value


def _insert(conn: object, task_id: uuid.UUID, series: uuid.UUID, occurrence: int, due: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO tasks (id, user_id, title, description, priority, priority_rank, tags, status,"
            " due_at, timezone, recurrence, recurrence_basis, reminders, series_id, occurrence, version,"
            " created_at, updated_at) VALUES (:id, 'u', 't', '', 'none', 3, '[]', 'pending', :due,"
            " 'America/New_York', 'FREQ=DAILY', 'due', '[]', :series, :occ, 1, :due, :due)"
        ),
        {"id": task_id.hex, "series": series.hex, "occ": occurrence, "due": due},
    )


def test_migration_0002_existing_series_anchored_at_first_occurrence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    upgrade(url, "0001")
    series = uuid.uuid4()
    engine = make_engine(url)
    with engine.begin() as conn:
        _insert(conn, series, series, 1, "2030-03-09 07:30:00.000000")  # 02:30 EST
        # The DST-shifted second occurrence the old code stored (03:30 EDT for good).
        _insert(conn, uuid.uuid4(), series, 2, "2030-03-11 07:30:00.000000")
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT occurrence, series_start, series_timezone, original_due_at FROM tasks ORDER BY 2")
        ).all()
    engine.dispose()
    assert [(r[0], r[1], r[2]) for r in sorted(rows)] == [
        (1, "2030-03-09T02:30:00", "America/New_York"),
        (2, "2030-03-09T02:30:00", "America/New_York"),
    ]
    assert all(r[3] is not None for r in rows)


def _tag_users_after_upgrade(url: str, first: str, tags: int = 1) -> list[tuple[str, str]]:
    """Upgrade to ``first``, write a task and ``tags`` tag rows as a release before 0004 does, upgrade to
    head."""
    upgrade(url, first)
    task = uuid.uuid4()
    engine = make_engine(url)
    with engine.begin() as conn:
        _insert(conn, task, task, 1, "2030-03-09 07:30:00.000000")
        for n in range(tags):
            conn.execute(
                text("INSERT INTO task_tags (task_id, tag) VALUES (:id, :tag)"),
                {"id": task.hex, "tag": "home" if n == 0 else f"t{n}"},
            )
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tag, user_id FROM task_tags ORDER BY tag")).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def test_migration_0004_existing_tags_take_their_task_user_in_batches(
    blank_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repairs, "BATCH", 2)  # 5 rows: batches of 2, 2 and 1
    users = _tag_users_after_upgrade(blank_url, "0003", tags=5)
    assert users == [("home", "u"), ("t1", "u"), ("t2", "u"), ("t3", "u"), ("t4", "u")]


def test_migrate_head_fills_tags_an_earlier_release_wrote_after_0004(database_url: str) -> None:
    # a traffic rollback serves the release before on this schema: its tag rows have no user
    assert _tag_users_after_upgrade(database_url, "head") == [("home", "u")]


def _ours(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    """Skip tables other components own in the same database (the Dapr state store's)."""
    return not (kind == "table" and reflected and compare_to is None)


def test_migrations_head_matches_the_models(blank_url: str) -> None:
    upgrade(blank_url)
    engine = make_engine(blank_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _ours})
        diff = compare_metadata(context, Base.metadata)
        if conn.dialect.name == "postgresql":  # the concurrent builds all finished
            assert conn.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar() == 0
    engine.dispose()
    assert diff == []


def test_migrate_database_a_later_release_migrated_left_alone_with_warning(
    blank_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a traffic rollback: this release starts on the schema of the release after it
    upgrade(blank_url)
    engine = make_engine(blank_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="tasktide.db.migrate"):
        upgrade(blank_url)
    assert _scalar(blank_url, "SELECT version_num FROM alembic_version") == "0999"
    head = ScriptDirectory.from_config(alembic_config(blank_url)).get_current_head()
    assert f"revision 0999, newer than this release's {head}: not migrating" in caplog.text


def test_migration_index_a_failed_concurrent_build_left_is_rebuilt(postgres_url: str) -> None:
    # CREATE INDEX CONCURRENTLY that fails leaves its index behind (INVALID), and the revision unchanged
    with fresh_database(postgres_url, "retry") as url:
        upgrade(url, "0004")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_tasks_user_due ON tasks (user_id)"))  # what the try left
        engine.dispose()
        upgrade(url)
        definition = _scalar(url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tasks_user_due'")
    assert str(definition).endswith("(user_id, due_at)")


def _waiting_on_lock(url: str, statement: str) -> bool:
    found = _scalar(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        f"AND query LIKE '{statement}%' AND datname = current_database()",
    )
    return bool(found)


def test_migrate_behind_a_long_transaction_gives_way_to_writes_then_raises(postgres_url: str) -> None:
    with fresh_database(postgres_url, "locked") as url:
        upgrade(url, "0003")
        engine = make_engine(url)
        task = uuid.uuid4()
        with engine.begin() as conn:
            _insert(conn, task, task, 1, "2030-03-09 07:30:00.000000")
        blocker = engine.connect()  # a long transaction that read task_tags: 0004's ALTER waits for it
        blocker.execute(text("SELECT count(*) FROM task_tags"))
        failed: list[BaseException] = []

        def migrate() -> None:
            try:
                upgrade(url, lock_timeout=0.5, attempts=3, backoff=0.1)
            except BaseException as exc:  # handed to the test thread
                failed.append(exc)

        migrator = threading.Thread(target=migrate)
        migrator.start()
        try:
            for _ in range(200):  # bounded: until 0004's ALTER TABLE queues for its lock
                if _waiting_on_lock(url, "ALTER TABLE task_tags"):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the migration never waited for task_tags' lock")
            with engine.begin() as writer:  # queued behind the ALTER until its lock_timeout ends the wait
                writer.execute(text("SET LOCAL statement_timeout = '20s'"))
                writer.execute(
                    text("INSERT INTO task_tags (task_id, tag) VALUES (:id, 'written')"), {"id": task.hex}
                )
            assert blocker.in_transaction()  # the write got through while the long transaction still ran
        finally:
            migrator.join(30)
            blocker.close()
        assert len(failed) == 1 and isinstance(failed[0], MigrationLocked)
        assert _scalar(url, "SELECT version_num FROM alembic_version") == "0003"
        upgrade(url)  # the transaction ended: the migration completes, and fills in the tag's user
        assert _scalar(url, "SELECT user_id FROM task_tags WHERE tag = 'written'") == "u"
        engine.dispose()


def test_migrate_concurrent_index_build_waits_out_a_writer_without_giving_way(postgres_url: str) -> None:
    # 0005 builds an index on tasks CONCURRENTLY: it waits for an open writer of tasks, and holds up no
    # write meanwhile, so the migration's lock_timeout does not apply to it
    with fresh_database(postgres_url, "cic") as url:
        upgrade(url, "0004")
        engine = make_engine(url)
        blocker = engine.connect()  # a writer of tasks whose transaction stays open
        _insert(blocker, uuid.uuid4(), uuid.uuid4(), 1, "2030-03-09 07:30:00.000000")
        failed: list[BaseException] = []

        def migrate() -> None:
            try:
                upgrade(url, lock_timeout=0.2, attempts=1)
            except BaseException as exc:  # handed to the test thread
                failed.append(exc)

        migrator = threading.Thread(target=migrate)
        migrator.start()
        try:
            for _ in range(200):  # bounded: until the build waits for the open writer
                if _waiting_on_lock(url, "CREATE INDEX CONCURRENTLY"):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the concurrent build never waited for the writer")
            time.sleep(1.0)  # five lock timeouts: a build under lock_timeout would have given up by now
            assert migrator.is_alive() and not failed
        finally:
            blocker.commit()
            blocker.close()
            migrator.join(30)
        assert not failed
        assert _scalar(url, "SELECT version_num FROM alembic_version") == "0005"
        engine.dispose()
