"""Alembic environment: runs migrations on the connection or URL handed over by `tasktide.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tasktide.db.engine import make_engine
from tasktide.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transaction_per_migration=True,  # as alembic asks of migrations with autocommit blocks (db.ddl)
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


run_migrations_online()
