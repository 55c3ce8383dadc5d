"""Migration 0002 anchors every existing series at its first stored occurrence (real SQLite file)."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import text

from tasktide.db.engine import make_engine
from tasktide.db.migrate import upgrade


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
