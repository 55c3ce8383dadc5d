"""Applies the Alembic migrations shipped inside the package (`tasktide migrate`, `tasktide dev`, API start).

On Postgres the upgrade holds an advisory lock, so API replicas starting together migrate once.

An upgrade to head then completes the rows an earlier release wrote after this schema was in place (a
traffic rollback keeps the previous revision serving on it, see docs/operations.md): `REPAIRS`, each a
statement that changes nothing when nothing is incomplete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from tasktide.db.engine import make_engine, normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x7A5C_7D1E
REPAIRS = (
    # 0004: a release before it writes tags without their task's user (the tag filter would miss them)
    "UPDATE task_tags SET user_id = (SELECT tasks.user_id FROM tasks WHERE tasks.id = task_tags.task_id)"
    " WHERE user_id IS NULL",
)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    repairs = REPAIRS if revision == "head" else ()
    if not normalise_url(url).startswith("postgresql"):
        command.upgrade(config, revision)
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                _repair(conn, repairs)
        finally:
            engine.dispose()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
                _repair(conn, repairs)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()


def _repair(conn: Connection, repairs: Sequence[str]) -> None:
    for statement in repairs:
        conn.execute(text(statement))
