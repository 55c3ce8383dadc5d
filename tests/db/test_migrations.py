"""Migrations on real databases: 0002 anchors every existing series at its first stored occurrence; 0004,
and every upgrade to head after it, give tags their task's user; the head schema is the models' (SQLite and
Postgres)."""

from __future__ import annotations

import uuid
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from tasktide.db.engine import make_engine
from tasktide.db.migrate import upgrade
from tasktide.db.models import Base


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


def _tag_users_after_upgrade(url: str, first: str) -> list[tuple[str, str]]:
    """Upgrade to ``first``, write a task and a tag row as a release before 0004 does, upgrade to head."""
    upgrade(url, first)
    task = uuid.uuid4()
    engine = make_engine(url)
    with engine.begin() as conn:
        _insert(conn, task, task, 1, "2030-03-09 07:30:00.000000")
        conn.execute(text("INSERT INTO task_tags (task_id, tag) VALUES (:id, 'home')"), {"id": task.hex})
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tag, user_id FROM task_tags")).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def test_migration_0004_existing_tags_take_their_task_user(tmp_path: Path) -> None:
    assert _tag_users_after_upgrade(f"sqlite:///{tmp_path / 'legacy.db'}", "0003") == [("home", "u")]


def test_migrate_head_fills_tags_an_earlier_release_wrote_after_0004(database_url: str) -> None:
    # a traffic rollback serves the release before on this schema: its tag rows have no user
    assert _tag_users_after_upgrade(database_url, "head") == [("home", "u")]


def _ours(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    """Skip tables other components own in the same database (the Dapr state store's)."""
    return not (kind == "table" and reflected and compare_to is None)


def test_migrations_head_matches_the_models(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _ours})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []
