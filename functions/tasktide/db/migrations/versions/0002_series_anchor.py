"""series anchored to their start: DTSTART wall time + zone, original instance, EXDATE / RDATE

Adds to `tasks`: `series_start` (local wall time "YYYY-MM-DDTHH:MM:SS", RFC 5545 DTSTART), `series_timezone`
(IANA), `original_due_at` (the rule instance an occurrence stands for), `exdates` and `rdates` (JSON lists
of RFC 3339 UTC instants). Backfills every existing series from its first stored occurrence (lowest
`occurrence`): its due time in its zone becomes the series start; each recurring row's instance is its
current due time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:55:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

import tasktide.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return ZoneInfo("UTC")


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("series_start", sa.String(length=19), nullable=True))
        batch_op.add_column(sa.Column("series_timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("original_due_at", tasktide.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("exdates", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("rdates", sa.JSON(), nullable=True))

    tasks = sa.table(
        "tasks",
        sa.column("id", sa.Uuid()),
        sa.column("series_id", sa.Uuid()),
        sa.column("occurrence", sa.Integer()),
        sa.column("due_at", tasktide.db.types.UTCDateTime(timezone=True)),
        sa.column("timezone", sa.String()),
        sa.column("recurrence", sa.Text()),
        sa.column("series_start", sa.String()),
        sa.column("series_timezone", sa.String()),
        sa.column("original_due_at", tasktide.db.types.UTCDateTime(timezone=True)),
    )
    bind = op.get_bind()
    # The first stored occurrence of every recurring series anchors it.
    first = (
        sa.select(tasks.c.series_id, sa.func.min(tasks.c.occurrence).label("occurrence"))
        .where(tasks.c.recurrence.is_not(None), tasks.c.due_at.is_not(None))
        .group_by(tasks.c.series_id)
        .subquery()
    )
    anchors = bind.execute(
        sa.select(tasks.c.series_id, tasks.c.due_at, tasks.c.timezone).join(
            first,
            sa.and_(tasks.c.series_id == first.c.series_id, tasks.c.occurrence == first.c.occurrence),
        )
    ).all()
    for series_id, due_at, timezone in anchors:
        moment: datetime = due_at if due_at.tzinfo else due_at.replace(tzinfo=UTC)
        wall = moment.astimezone(_zone(timezone)).replace(tzinfo=None, microsecond=0)
        bind.execute(
            sa.update(tasks)
            .where(tasks.c.series_id == series_id, tasks.c.recurrence.is_not(None))
            .values(series_start=wall.isoformat(), series_timezone=timezone)
        )
    bind.execute(
        sa.update(tasks)
        .where(tasks.c.recurrence.is_not(None), tasks.c.due_at.is_not(None))
        .values(original_due_at=tasks.c.due_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("rdates")
        batch_op.drop_column("exdates")
        batch_op.drop_column("original_due_at")
        batch_op.drop_column("series_timezone")
        batch_op.drop_column("series_start")
