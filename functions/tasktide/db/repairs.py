"""Completes the rows an earlier release writes on this release's schema.

While a rollout overlaps two revisions, or after a traffic rollback (docs/operations.md), the previous
revision keeps writing on the migrated schema, without what this release added beside its rows. Consumes: a
connection or session in a transaction. Emits: `REPAIRS`, UPDATEs that change nothing when nothing is
incomplete (each reads an index of the incomplete rows), run after every upgrade to head
(`tasktide.db.migrate`) and by every `outbox-sweep` tick (`tasktide.db.retention`), so such rows are
complete within a tick.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

REPAIRS = (
    # 0004: a release before it writes tags without their task's user (the tag filter would miss them)
    "UPDATE task_tags SET user_id = (SELECT tasks.user_id FROM tasks WHERE tasks.id = task_tags.task_id)"
    " WHERE user_id IS NULL",
)


def repair(executor: Connection | Session) -> int:
    """Run every repair; the number of rows completed."""
    completed = 0
    for statement in REPAIRS:
        completed += int(getattr(executor.execute(text(statement)), "rowcount", 0) or 0)
    return completed
