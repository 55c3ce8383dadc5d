"""Completes the rows an earlier release writes on this release's schema.

While a rollout overlaps two revisions, or after a traffic rollback (docs/operations.md), the previous
revision keeps writing on the migrated schema, without what this release added beside its rows. Consumes: a
connection or session in a transaction. Emits: `REPAIRS`, UPDATEs of at most ``BATCH`` rows each that
change nothing when nothing is incomplete (each reads an index of the incomplete rows), run until done after
every upgrade to head (`tasktide.db.migrate`, one transaction per batch) and once by every `outbox-sweep`
tick (`tasktide.db.retention`), so such rows are complete within a tick or a few.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

BATCH = 5000

TAG_USERS = (
    # 0004: a release before it writes tags without their task's user (the tag filter would miss them)
    "UPDATE task_tags SET user_id = (SELECT tasks.user_id FROM tasks WHERE tasks.id = task_tags.task_id)"
    " WHERE (task_id, tag) IN (SELECT task_id, tag FROM task_tags WHERE user_id IS NULL LIMIT :batch)"
)
REPAIRS = (TAG_USERS,)


def run(executor: Connection | Session, statement: str, batch: int = BATCH) -> int:
    """One batch of one repair; the number of rows it completed."""
    return int(getattr(executor.execute(text(statement), {"batch": batch}), "rowcount", 0) or 0)


def repair(executor: Connection | Session, batch: int = BATCH) -> int:
    """One batch of every repair; the number of rows completed (``batch`` or more: call again)."""
    return sum(run(executor, statement, batch) for statement in REPAIRS)


def repair_all(conn: Connection, batch: int = BATCH) -> int:
    """Every repair until done, committing after each batch; the number of rows completed."""
    total = 0
    for statement in REPAIRS:
        while True:  # bounded: every full batch completes rows no later batch selects again
            done = run(conn, statement, batch)
            conn.commit()
            total += done
            if done < batch:
                break
    return total
