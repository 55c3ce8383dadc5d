"""task tags carry their task's user: a tag filter reads only its user's tags

`task_tags.user_id` (filled from `tasks.user_id`), and the index `ix_task_tags_user_tag` (user_id, tag,
task_id) in place of `ix_task_tags_tag` (tag, task_id). With the tag index alone, a list filtered by a tag
that many users share (measured: 10,000 tasks of one user tagged `bench`, a reader with 200) scanned every
user's rows of that tag: 4.9 ms of Postgres per list, against 0.38 ms scoped to the user.

On Postgres nothing here stops the running release's writes for long (`tasktide.db.ddl`): the indexes
are built and dropped concurrently, and the backfill commits every `repairs.BATCH` rows.

The column stays nullable for one release, so the release before keeps working on this schema while a
rollout overlaps both or after a traffic rollback (its tag rows have no user): `tasktide.db.repairs` fills
them in at every upgrade to head and every `outbox-sweep` tick. A later migration may make it NOT NULL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tasktide.db import ddl, repairs

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: a catalogue change, no table rewrite.
    with op.batch_alter_table("task_tags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=128), nullable=True))
    # The index first: the backfill's batches find the rows still without a user through it.
    ddl.create_index("ix_task_tags_user_tag", "task_tags", ["user_id", "tag", "task_id"])
    ddl.backfill(lambda conn: repairs.run(conn, repairs.TAG_USERS, repairs.BATCH), repairs.BATCH)
    ddl.drop_index("ix_task_tags_tag", "task_tags")


def downgrade() -> None:
    with op.batch_alter_table("task_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_task_tags_user_tag")
        batch_op.create_index("ix_task_tags_tag", ["tag", "task_id"], unique=False)
        batch_op.drop_column("user_id")
