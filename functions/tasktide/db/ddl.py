"""Migration steps that do not stop the running release's writes (consumed by `migrations/versions`).

On Postgres a plain `CREATE INDEX` holds a SHARE lock, and a plain `DROP INDEX` an ACCESS EXCLUSIVE one,
for the whole build: every INSERT, UPDATE and DELETE on the table waits. Here both run `CONCURRENTLY`,
outside a transaction (alembic's autocommit block), and a backfill commits every `repairs.BATCH` rows, so
row locks stay short. A concurrent build that fails leaves an INVALID index behind: each build first drops
one left by an earlier try. SQLite has none of this (one writer at a time): the plain statements run in the
migration's transaction.

These steps run without the migration's `lock_timeout` (`tasktide.db.migrate`): a concurrent build waits
for older transactions without holding up any write, and a backfill batch waits on one row's lock only, so
neither has a reason to give way. A retry would also find the revision half applied: its transactional
part is committed before the first of these steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

from alembic import op
from sqlalchemy import Connection, text


def _online() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


@contextmanager
def _online_block() -> Iterator[None]:
    """Alembic's autocommit block, with `lock_timeout` off inside it (see the module docstring)."""
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        previous = bind.execute(text("SHOW lock_timeout")).scalar()
        bind.execute(text("SET lock_timeout = 0"))
        try:
            yield
        finally:
            bind.execute(text("SELECT set_config('lock_timeout', :value, false)"), {"value": str(previous)})


def create_index(name: str, table: str, columns: Sequence[str]) -> None:
    if not _online():
        with op.batch_alter_table(table) as batch:
            batch.create_index(name, list(columns), unique=False)
        return
    with _online_block():
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
        op.create_index(name, table, list(columns), unique=False, postgresql_concurrently=True)


def drop_index(name: str, table: str) -> None:
    if not _online():
        with op.batch_alter_table(table) as batch:
            batch.drop_index(name)
        return
    with _online_block():
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)


def backfill(batch: Callable[[Connection], int], size: int) -> int:
    """Run ``batch`` until it completes fewer than ``size`` rows, each batch its own transaction on Postgres;
    the rows completed."""
    total = 0
    with _online_block() if _online() else nullcontext():
        while (done := batch(op.get_bind())) == size:
            total += done
    return total + done
