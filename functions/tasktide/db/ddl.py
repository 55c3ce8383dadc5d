"""Migration steps that do not stop the running release's writes (consumed by `migrations/versions`).

On Postgres a plain `CREATE INDEX` holds a SHARE lock, and a plain `DROP INDEX` an ACCESS EXCLUSIVE one,
for the whole build: every INSERT, UPDATE and DELETE on the table waits. Here both run `CONCURRENTLY`,
outside a transaction (alembic's autocommit block), and a backfill commits every `repairs.BATCH` rows, so
row locks stay short. A concurrent build that fails leaves an INVALID index behind: each build first drops
one left by an earlier try. SQLite has none of this (one writer at a time): the plain statements run in the
migration's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

from alembic import op
from sqlalchemy import Connection


def _online() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def create_index(name: str, table: str, columns: Sequence[str]) -> None:
    if not _online():
        with op.batch_alter_table(table) as batch:
            batch.create_index(name, list(columns), unique=False)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
        op.create_index(name, table, list(columns), unique=False, postgresql_concurrently=True)


def drop_index(name: str, table: str) -> None:
    if not _online():
        with op.batch_alter_table(table) as batch:
            batch.drop_index(name)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)


def backfill(batch: Callable[[Connection], int], size: int) -> int:
    """Run ``batch`` until it completes fewer than ``size`` rows, each batch its own transaction on Postgres;
    the rows completed."""
    total = 0
    with op.get_context().autocommit_block() if _online() else nullcontext():
        while (done := batch(op.get_bind())) == size:
            total += done
    return total + done
